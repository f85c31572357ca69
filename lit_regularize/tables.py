"""The one place that formats numbers for people and writes Markdown and CSV tables."""
from __future__ import annotations

import csv
import io
import math
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lit_regularize.files import atomic_write

MISSING = "–"
Column = tuple[str, str, str]  # (row key, header, format spec such as "{:.4f}")


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def fmt(v: Any, spec: str = "{:.4f}") -> str:
    """A number with spec; ints as ints; None or NaN as '–'; anything else as str."""
    if v is None:
        return MISSING
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, int) and spec == "{:.4f}":
        return str(v)
    return spec.format(v)


def mean_std(values: Sequence[Any], spec: str = "{:.4f}") -> str:
    """The value, or mean ± std over several (non-finite and missing values left out); the value alone when every
    value is the same (a "± 0" says nothing), e.g. the parameter count of every seed; a spread too small for the
    spec's last digit as "<" that digit (spread)."""
    given = [v for v in values if _number(v) is not None]
    nums = [float(v) for v in given]
    if not nums:
        return MISSING
    if len(set(nums)) == 1:
        if all(isinstance(v, int) for v in given):  # 20 epochs, not "20.0"
            return f"{given[0]:,}" if "," in spec else str(given[0])
        return fmt(nums[0], spec)
    return f"{fmt(statistics.fmean(nums), spec)} ± {spread(statistics.stdev(nums), spec)}"


def spread(std: float, spec: str = "{:.4f}") -> str:
    """A standard deviation in a value's spec, unsigned; one too small for the spec's last digit reads "<" that
    digit ("<0.0001", "<0.1%"), never a "0.0000" that looks like no spread at all."""
    text = fmt(std, spec.replace("{:+", "{:"))  # a signed mean, an unsigned spread: "+0.1050 ± 0.0215"
    if std > 0 and not any(c in "123456789" for c in text):
        last = max(i for i, c in enumerate(text) if c.isdigit())
        text = "<" + text[:last] + "1" + text[last + 1:]
    return text


def interval(low: Any, high: Any, spec: str = "{:.4f}") -> str:
    """'[low, high]', or '–' when either end is missing."""
    if _number(low) is None or _number(high) is None:
        return MISSING
    return f"[{fmt(low, spec)}, {fmt(high, spec)}]"


def p_value(p: Any) -> str:
    """A p-value for people: 3 significant digits, '< 0.001' below that, '–' when missing."""
    n = _number(p)
    if n is None:
        return MISSING
    return "< 0.001" if n < 0.001 else f"{n:.3g}"


def markdown(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of rows, one column per (key, header, spec)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [(fmt(r.get(k), spec) if spec else str(r.get(k, MISSING))).replace("|", "\\|")
                 for k, _, spec in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Mapping[str, Any]], fields: Optional[Sequence[str]] = None) -> str:
    """Rows as CSV at full precision; missing values empty."""
    fields = list(fields or dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a table (or any text) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


__all__ = ["fmt", "mean_std", "spread", "interval", "p_value", "markdown", "csv_text", "write_text", "MISSING", "Column"]
