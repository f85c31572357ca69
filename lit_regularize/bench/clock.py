"""The epoch clock of the bench's lit_regularize rows: wall time from one epoch's start to the next."""
from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl

from lit_regularize.config import Config
from lit_regularize.summary import RunSummary


class EpochClock(pl.Callback):
    """Seconds from each epoch's start to the next one's (the last epoch's: to the end of fit), so an epoch counts
    everything it costs a user: training, validation, checkpoint writes, TensorBoard logging.

    A run's own history["epoch_time"] stops at its train-epoch-end hook, before Lightning's checkpoint callbacks run,
    so timing the bench by it would leave the checkpoint writes out.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start: float | None = None

    def _lap(self) -> float:
        now = time.perf_counter()
        if self._start is not None:
            self.times.append(now - self._start)
        return now

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._lap()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._lap()
        self._start = None


def timed_run(cfg: Config, **run_args: Any) -> tuple[list[float], RunSummary]:
    """run(cfg, **run_args) as users run it, with each epoch's start-to-start seconds."""
    from lit_regularize.run import run

    clock = EpochClock()
    summary = run(cfg, extra_callbacks=[clock], **run_args)
    return clock.times, summary


__all__ = ["EpochClock", "timed_run"]
