"""Printing run summaries for people."""
from __future__ import annotations

from typing import Any


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def print_summary(summary: dict[str, Any]) -> None:
    """A few lines: best epoch and val loss, test scores of best and last weights, where the run lives."""
    print(f"run:        {summary.get('log_dir')}  ({summary.get('status')}, stopped by {summary.get('stop_reason')}, "
          f"{summary.get('epochs_run')} epochs, {summary.get('n_params')} parameters)")
    print(f"best epoch: {summary.get('best_epoch')}  val/loss {_fmt(summary.get('best_val_loss'))}  "
          f"val/acc {_fmt(summary.get('best_val_acc'))}")
    test = summary.get("test") or {}
    for which in ("best", "last"):
        if which in test:
            print(f"test ({which + ' weights':12s}) loss {_fmt(test[which]['loss'])}  acc {_fmt(test[which]['acc'])}")
    if summary.get("best_checkpoint"):
        print(f"checkpoint: {summary['best_checkpoint']}")
