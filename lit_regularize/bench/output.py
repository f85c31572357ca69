"""The bench's tables: each section's rows through the shared Markdown writer (lit_regularize.tables)."""
from __future__ import annotations

from typing import Any, Mapping

from lit_regularize.bench import imdb, mnist, population, sweep
from lit_regularize.tables import markdown

TITLES = {"imdb": "IMDB: seconds per epoch (peers: train + validation; lit_*: start to start, checkpoints and "
                  "logging included)",
          "mnist": "Fashion-MNIST: seconds per training epoch (lit_*: start to start, checkpoint and logging "
                   "included)",
          "sweep": "Sweep throughput (study wall: first trial start to last trial end)",
          "population": "Populations: members trained together vs one at a time (command wall; sweep: study wall)"}
COLUMNS = {"imdb": imdb.COLUMNS, "mnist": mnist.COLUMNS, "sweep": sweep.COLUMNS, "population": population.COLUMNS}


def markdown_report(results: Mapping[str, Mapping[str, Any]], machine: str) -> str:
    """One Markdown block: the machine line, then a titled table per section that ran."""
    parts = [f"machine: {machine}"]
    for name, result in results.items():
        parts.append(f"### {TITLES[name]}\n\n{markdown(COLUMNS[name], result['rows'])}".rstrip())
        if name == "imdb" and result.get("peak_rss_mb") is not None:
            parts.append(f"peak RSS of lit-regularize fit on the full IMDB (train + val + test): "
                         f"{result['peak_rss_mb']:.0f} MB")
    return "\n\n".join(parts) + "\n"


__all__ = ["markdown_report", "TITLES", "COLUMNS"]
