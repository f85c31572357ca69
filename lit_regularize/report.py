"""Printing run summaries for people."""
from __future__ import annotations

import math

from lit_regularize.stats import ONSET_RTOL, overfitting
from lit_regularize.summary import RunSummary
from lit_regularize.tables import fmt


def print_summary(summary: RunSummary) -> None:
    """A few lines: best epoch and val loss, test scores of best and last weights, where the run lives."""
    s = summary
    epochs = f"{s.epochs_run} epoch" + ("" if s.epochs_run == 1 else "s")
    print(f"run:        {s.run_dir}  ({s.status}, stopped by {s.stop_reason}, {epochs}, {s.n_params:,} parameters)")
    numbers = s.overfitting if s.overfitting is not None else overfitting(s.history or {}, s.best_epoch)
    if s.best_epoch is not None:
        print(f"best epoch: {s.best_epoch}  val/loss {fmt(s.best_val_loss)}  val/acc {fmt(s.best_val_acc)}"
              f"  {GAP} {_signed(numbers.get('gap_at_best'))}")
    else:
        print(f"best epoch: none ({no_best_reason(s)})")
    last = last_epoch_line(s, numbers.get("gap_last"))
    if last:
        print(last)
        print(f"overfitting: {overfitting_phrase(numbers, s.epochs_run)}")
    for which in ("best", "last"):
        if s.test and which in s.test:
            print(f"test ({which + ' weights':12s}) loss {fmt(s.test[which]['loss'])}  acc {fmt(s.test[which]['acc'])}")
    if s.best_checkpoint:
        print(f"checkpoint: {s.path(s.best_checkpoint)}")


GAP = "gap (val − train loss)"


def _signed(v: object) -> str:
    return fmt(v, "{:+.4f}")


def last_epoch_line(s: RunSummary, gap_last: object) -> str:
    """'last epoch: N  val/loss ...  val/acc ...  gap ...' for a run that validated in its last epoch, else ''."""
    h = s.history or {}
    val = (h.get("val_loss") or [None])[-1]
    if not s.epochs_run or val is None:
        return ""
    acc = (h.get("val_acc") or [None])[-1]
    epoch = (h.get("epoch") or [s.epochs_run])[-1]
    return f"last epoch: {epoch}  val/loss {fmt(val)}  val/acc {fmt(acc)}  {GAP} {_signed(gap_last)}"


def overfitting_phrase(numbers: dict, epochs_run: int) -> str:
    """Where overfitting starts and how fast the gap grows after it, in words (stats.overfitting's numbers)."""
    onset, slope = numbers.get("onset_epoch"), numbers.get("gap_slope")
    near = f"within {ONSET_RTOL:.0%} of its minimum"
    if onset is None:
        if epochs_run < 2:
            return "not measurable from 1 epoch"
        return f"none seen (the val loss is still {near} in the last epoch, or never finite)"
    growth = (f"the gap grows {_signed(slope)} per epoch after it" if slope is not None
              else "too few epochs after it to measure the gap's growth")
    return f"from epoch {onset} (the val loss never came back {near} after it); {growth}"


def no_best_reason(s: RunSummary) -> str:
    """Why a run has no best epoch: nothing finished, nothing validated, or a validation loss never finite."""
    if not s.epochs_run:
        return "no epoch finished"
    val = [v for v in s.history.get("val_loss", []) if v is not None]
    if not val:  # nothing validated (--val-size 0): the last weights are the ones to use
        return "no validation set: the best weights are the last"
    first = next(i for i, v in enumerate(s.history["val_loss"]) if v is not None and not math.isfinite(v))
    return f"the validation loss was never finite: the run diverged in epoch {s.history['epoch'][first]}"
