"""Answers with uncertainty: means with t-based 95 % intervals over seeds, paired tests against a baseline, plain-words
verdicts, and overfitting as numbers (generalization gap, onset epoch, gap growth).

Everything here works on plain numbers (no torch), so `compare`, the fit summary, TensorBoard and the tests share
one definition of each number.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
WILCOXON_MIN_N = 6  # below 6 pairs the signed-rank test cannot reach p < 0.05 (two-sided): not reported
# The onset of overfitting: the last epoch whose val loss is within this tolerance of the run's minimum
# (max of relative and absolute: 1 % of a 0.28 loss is 0.0028, about the epoch-to-epoch noise of IMDB's val loss).
ONSET_RTOL = 0.01
ONSET_ATOL = 1e-4


def _finite(v: Any) -> Optional[float]:
    """v as a float when it is a finite number (bools, None, NaN and text are not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def finite_values(values: Sequence[Any]) -> list[float]:
    """The finite numbers among values, in order (None, NaN and non-numbers left out)."""
    return [v for v in map(_finite, values) if v is not None]


# -- intervals and tests -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spread:
    """Mean, sample std and the t-based 95 % interval of the mean over n values (std/interval None when n < 2)."""

    n: int
    mean: Optional[float]
    std: Optional[float]
    low: Optional[float]
    high: Optional[float]


def describe(values: Sequence[Any], confidence: float = CONFIDENCE) -> Spread:
    """Spread of the finite values: mean ± t(n-1) · std/√n; identical values give a zero-width interval."""
    x = np.asarray(finite_values(values), dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Spread(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return Spread(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    if np.ptp(x) == 0:  # every value the same: scipy's interval would be NaN (scale 0)
        return Spread(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(x))
    return Spread(n, mean, std, float(low), float(high))


@dataclass(frozen=True)
class Paired:
    """A setting minus its baseline over the seeds both ran: mean difference, its 95 % interval, the paired t
    test's p and (n >= 6) the Wilcoxon signed-rank test's p; None where n is too small."""

    n: int
    diff: Optional[float]
    low: Optional[float]
    high: Optional[float]
    p_t: Optional[float]
    p_wilcoxon: Optional[float]


def paired(values: Sequence[Any], baseline: Sequence[Any], confidence: float = CONFIDENCE) -> Paired:
    """Paired comparison of values[i] with baseline[i] (same seed); pairs with a missing side are left out."""
    pairs = [(a, b) for a, b in zip(map(_finite, values), map(_finite, baseline)) if a is not None and b is not None]
    d = np.asarray([a - b for a, b in pairs], dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return Paired(0, None, None, None, None, None)
    diff = float(d.mean())
    if n == 1:
        return Paired(1, diff, None, None, None, None)
    if np.ptp(d) == 0:  # the same difference on every seed (often 0: identical runs): no spread to test against
        p = 1.0 if diff == 0 else 0.0  # scipy's t statistic is ±inf (p 0) or 0/0 here
        return Paired(n, diff, diff, diff, p, (p if n >= WILCOXON_MIN_N else None))
    with warnings.catch_warnings():  # near-identical differences: scipy warns about precision, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_1samp(d, 0.0)
        ci = t.confidence_interval(confidence)
        p_w = float(stats.wilcoxon(d).pvalue) if n >= WILCOXON_MIN_N and np.any(d != 0) else None
    return Paired(n, diff, float(ci.low), float(ci.high), float(t.pvalue), p_w)


# -- metrics and verdicts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """A number compared across settings: its row key, title, format and which direction is better
    ('lower', 'higher', or None where neither is: then the verdict says `up` / `down`)."""

    key: str
    title: str
    better: Optional[str]
    spec: str = "{:.4f}"
    note: str = ""
    up: str = "higher"
    down: str = "lower"


METRICS: tuple[Metric, ...] = (
    Metric("best_val_loss", "best val loss", "lower", note="each seed's lowest val loss"),
    Metric("test_acc_best", "test acc (best ckpt)", "higher", note="weights of each seed's best epoch"),
    Metric("test_acc_last", "test acc (last)", "higher", note="weights of the last epoch"),
    Metric("best_epoch", "best epoch", None, "{:.1f}", note="each seed's epoch of lowest val loss, 1-based",
           up="later", down="earlier"),
    Metric("last_val_loss", "val loss (last epoch)", "lower", note="each seed's val loss in its last epoch"),
    Metric("gap_at_best", "gap at best epoch", "lower", note="val − train loss at each seed's best epoch"),
    Metric("gap_last", "gap at last epoch", "lower", note="val − train loss at the last epoch"),
    Metric("onset_epoch", "overfitting onset", "higher", "{:.1f}",
           note="last epoch within 1 % of the min val loss; seeds that never overfit are left out"),
    Metric("gap_slope", "gap growth / epoch", "lower", note="least-squares slope of the gap after the onset"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}

HELPS, HURTS, NO_DIFF, BASELINE = "helps", "hurts", "no detectable difference", "baseline"


def _signed(v: float, spec: str) -> str:
    text = spec.format(abs(v))
    return ("−" if v < 0 else "+") + text


def verdict(metric: Metric, p: Paired) -> tuple[str, str]:
    """(word, sentence) for a setting against the baseline: 'helps' / 'hurts' / 'no detectable difference' when
    the 95 % interval of the paired difference excludes / includes 0 (direction from metric.better; for a metric
    without a better direction its up / down words, e.g. 'later' / 'earlier'), with the difference and its
    interval in the sentence."""
    if p.n == 0:
        return "no paired seeds", "no seed in common with the baseline: no paired comparison"
    spec = metric.spec
    if p.low is None or p.high is None or p.diff is None:
        return "one paired seed", f"Δ {_signed(p.diff or 0.0, spec)} on 1 seed: no interval (use --seeds 2 or more)"
    interval = f"95 % CI {_signed(p.low, spec)} to {_signed(p.high, spec)}"
    if p.low <= 0.0 <= p.high:
        return NO_DIFF, f"{NO_DIFF}: Δ {_signed(p.diff, spec)} ({interval}, n={p.n})"
    higher = p.low > 0
    if metric.better is None:
        word = metric.up if higher else metric.down
    else:
        word = HELPS if higher == (metric.better == "higher") else HURTS
    how = f"{metric.up if higher else metric.down} by {spec.format(abs(p.diff))}"
    return word, f"{word}: {how} ({interval}, n={p.n})"


def paired_by_seed(values: Mapping[Any, Any], baseline: Mapping[Any, Any]) -> tuple[list[Any], list[Any]]:
    """Two aligned lists over the seeds both sides ran (seed -> value maps), in seed order."""
    common = sorted(set(values) & set(baseline), key=lambda s: (str(type(s)), s))
    return [values[s] for s in common], [baseline[s] for s in common]


# -- overfitting as numbers ----------------------------------------------------------------------------------

def gap_curve(history: Mapping[str, Sequence[Any]]) -> list[Optional[float]]:
    """Per epoch: val loss − train loss (the generalization gap), None where either is missing or not finite."""
    val, train = history.get("val_loss") or [], history.get("train_loss") or []
    out: list[Optional[float]] = []
    for v, t in zip(map(_finite, val), map(_finite, train)):
        out.append(v - t if v is not None and t is not None else None)
    return out


def onset_epoch(val_loss: Sequence[Any], rtol: float = ONSET_RTOL, atol: float = ONSET_ATOL) -> Optional[int]:
    """The 1-based epoch after which the val loss never gets back within max(rtol·|min|, atol) of its minimum:
    the last epoch within that tolerance, provided a later epoch exists (all later ones are then above it).

    None when the last finite epoch is still within the tolerance (no overfitting seen), with fewer than two
    finite epochs, or without any. Non-finite epochs are skipped: a diverged tail is not counted as overfitting."""
    finite = [(i + 1, v) for i, v in enumerate(map(_finite, val_loss)) if v is not None]
    if len(finite) < 2:
        return None
    low = min(v for _, v in finite)
    tol = max(rtol * abs(low), atol)
    near = [e for e, v in finite if v <= low + tol]
    last_near = near[-1]
    return last_near if last_near < finite[-1][0] else None


def gap_slope(gaps: Sequence[Optional[float]], after: Optional[int]) -> Optional[float]:
    """Least-squares slope (per epoch) of the gap over the 1-based epochs after `after` (epochs with a gap);
    None without an onset or with fewer than 2 such epochs."""
    if after is None:
        return None
    points = [(i + 1, g) for i, g in enumerate(gaps) if i + 1 > after and g is not None]
    if len(points) < 2:
        return None
    x, y = zip(*points)
    return float(stats.linregress(x, y).slope)


def overfitting(history: Mapping[str, Sequence[Any]], best_epoch: Optional[int]) -> dict[str, Optional[float]]:
    """A run's overfitting numbers: gap_at_best (val − train loss at the 1-based best epoch), gap_last (at the last
    epoch), onset_epoch (see onset_epoch) and gap_slope (see gap_slope); None where not defined."""
    gaps = gap_curve(history)
    onset = onset_epoch(history.get("val_loss") or [])
    at_best = gaps[best_epoch - 1] if best_epoch is not None and 1 <= best_epoch <= len(gaps) else None
    return {"gap_at_best": at_best, "gap_last": gaps[-1] if gaps else None, "onset_epoch": onset,
            "gap_slope": gap_slope(gaps, onset)}


__all__ = ["CONFIDENCE", "WILCOXON_MIN_N", "ONSET_RTOL", "ONSET_ATOL", "Spread", "describe", "Paired", "paired",
           "Metric", "METRICS", "METRIC_BY_KEY", "verdict", "paired_by_seed", "gap_curve", "onset_epoch",
           "gap_slope", "overfitting", "finite_values", "HELPS", "HURTS", "NO_DIFF", "BASELINE"]
