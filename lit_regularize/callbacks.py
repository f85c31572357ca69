"""Callbacks every run uses: per-epoch history (with RNG state for exact resume), what interrupted a fit, and the
one line per epoch that fit and compare print."""
from __future__ import annotations

import contextlib
import contextvars
import math
import random
import time
from typing import Any, Iterator, Optional

import numpy as np
import pytorch_lightning as pl
import torch

from lit_regularize.summary import HISTORY_KEYS as SUMMARY_HISTORY_KEYS, best_of, empty_history

# history key -> logged metric (train_loss -> train/loss, ...): the summary's per-epoch keys besides epoch and time
HISTORY_KEYS = {k: k.replace("_", "/", 1) for k in SUMMARY_HISTORY_KEYS if k not in ("epoch", "epoch_time")}


def _value(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    return None if v is None else float(v)


class History(pl.Callback):
    """Per-epoch train/val metrics and wall time; saved in checkpoints together with the RNG states."""

    def __init__(self) -> None:
        self.history: dict[str, list] = empty_history()
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = dict(trainer.callback_metrics)
        # Callbacks run before the module's on_train_epoch_end, which logs this epoch's train metrics.
        if hasattr(pl_module, "train_epoch_metrics"):
            metrics.update(pl_module.train_epoch_metrics())
        self.history["epoch"].append(trainer.current_epoch + 1)
        self.history["epoch_time"].append(time.perf_counter() - self._t0)
        for name, key in HISTORY_KEYS.items():
            self.history[name].append(_value(metrics, key))

    @property
    def non_finite(self) -> bool:
        """Whether a recorded train or val loss is NaN/inf."""
        return any(v is not None and not math.isfinite(v)
                   for k in ("train_loss", "val_loss") for v in self.history[k])

    def state_dict(self) -> dict[str, Any]:
        # RNG states make a resumed run draw the same shuffles and dropout masks as an uninterrupted one.
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # Plain types and tensors only, so checkpoints load with torch.load(weights_only=True).
        return {"history": self.history, "torch_rng": torch.get_rng_state(),
                "numpy_rng": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
                "python_rng": random.getstate()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict["history"]
        n = len(self.history["epoch"])
        for k in HISTORY_KEYS:  # checkpoints of older versions lack newer keys (train_acc): unknown for those epochs
            self.history.setdefault(k, [None] * n)
        torch.set_rng_state(state_dict["torch_rng"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy_rng"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state_dict["python_rng"])


class InterruptReason(pl.Callback):
    """Records what exception stopped the fit (Ctrl-C, SIGTERM, a bug), so run() can tell them apart."""

    def __init__(self) -> None:
        self.interrupted_by: str | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # No mid-epoch save: Lightning cannot resume such a checkpoint exactly (the sampler restarts), and one
        # taken between an epoch's last batch and its validation does not resume at all. The "last"
        # ModelCheckpoint already wrote last.ckpt atomically at the end of the epoch, so --resume is exact.
        self.interrupted_by = type(exception).__name__


# Whether runs started now print their epoch lines: None (nobody said) and False mean no. Fit and compare, the entry
# points that show a run to a person, turn them on unless an enclosing block turned them off; sweep trials, k-fold
# worker processes (a context does not cross into them) and the benchmark stay quiet without having to ask.
_EPOCH_LINES: contextvars.ContextVar[Optional[bool]] = contextvars.ContextVar("lit_regularize_epoch_lines",
                                                                              default=None)


@contextlib.contextmanager
def epoch_lines(on: bool = True, *, unless_silenced: bool = False) -> Iterator[None]:
    """Within the block, every run() prints one line per epoch (EpochLine), or none with on=False
    (`with epoch_lines(False): lr.fit(...)`). unless_silenced=True (fit, compare) keeps an enclosing on=False."""
    token = _EPOCH_LINES.set(on and not (unless_silenced and _EPOCH_LINES.get() is False))
    try:
        yield
    finally:
        _EPOCH_LINES.reset(token)


def printing_epochs() -> bool:
    """Whether runs started now print their epoch lines (see epoch_lines)."""
    return bool(_EPOCH_LINES.get())


def epoch_line(history: dict[str, list], max_epochs: int) -> str:
    """The history's last epoch as one keras-style line, marked "(best)" when it is the run's best epoch so far
    (the one the best checkpoint now holds):
    `Epoch  3/20 -   1.9s - train/loss: 0.3012 - train/acc: 0.8931 - val/loss: 0.2874 - val/acc: 0.8852 (best)`."""
    i = len(history["epoch"]) - 1
    epoch = history["epoch"][i]
    parts = [f"Epoch {epoch:>{len(str(max_epochs))}}/{max_epochs}", f"{history['epoch_time'][i]:6.1f}s"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        value = (history.get(key) or [None] * (i + 1))[i]
        if value is not None:  # no val/ values without a validation set
            parts.append(f"{HISTORY_KEYS[key]}: {value:.4f}")
    line = " - ".join(parts)
    return f"{line} (best)" if best_of(history)[0] == epoch else line


class EpochLine(pl.Callback):
    """Prints epoch_line() at the end of every epoch (rank 0 only): a line that stays, in a terminal (above the
    live bar), in a log file and under --no-progress. Must come after `history` in the callback list."""

    def __init__(self, history: History) -> None:
        self.history = history

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history.history["epoch"]:
            return
        line = epoch_line(self.history.history, trainer.max_epochs)
        bar = trainer.progress_bar_callback
        if bar is not None and bar.is_enabled:
            bar.print(line)  # tqdm.write: the line goes above the live bar instead of through it
        else:
            print(line, flush=True)
