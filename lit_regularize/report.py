"""Printing run summaries for people."""
from __future__ import annotations

import math

from lit_regularize.summary import RunSummary
from lit_regularize.tables import fmt


def print_summary(summary: RunSummary) -> None:
    """A few lines: best epoch and val loss, test scores of best and last weights, where the run lives."""
    s = summary
    epochs = f"{s.epochs_run} epoch" + ("" if s.epochs_run == 1 else "s")
    print(f"run:        {s.run_dir}  ({s.status}, stopped by {s.stop_reason}, {epochs}, {s.n_params:,} parameters)")
    if s.best_epoch is not None:
        print(f"best epoch: {s.best_epoch}  val/loss {fmt(s.best_val_loss)}  val/acc {fmt(s.best_val_acc)}")
    else:
        print(f"best epoch: none ({no_best_reason(s)})")
    for which in ("best", "last"):
        if s.test and which in s.test:
            print(f"test ({which + ' weights':12s}) loss {fmt(s.test[which]['loss'])}  acc {fmt(s.test[which]['acc'])}")
    if s.best_checkpoint:
        print(f"checkpoint: {s.path(s.best_checkpoint)}")


def no_best_reason(s: RunSummary) -> str:
    """Why a run has no best epoch: nothing finished, nothing validated, or a validation loss never finite."""
    if not s.epochs_run:
        return "no epoch finished"
    val = [v for v in s.history.get("val_loss", []) if v is not None]
    if not val:  # nothing validated (--val-size 0): the last weights are the ones to use
        return "no validation set: the best weights are the last"
    first = next(i for i, v in enumerate(s.history["val_loss"]) if v is not None and not math.isfinite(v))
    return f"the validation loss was never finite: the run diverged in epoch {s.history['epoch'][first]}"
