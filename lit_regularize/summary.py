"""RunSummary: the one result type of a run, a k-fold evaluation and a sweep trial (summary.json)."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lit_regularize.files import read_json, write_json

SUMMARY = "summary.json"
HISTORY_KEYS = ("epoch", "epoch_time", "train_loss", "train_acc", "train_penalty", "val_loss", "val_acc")


def empty_history() -> dict[str, list]:
    """Per-epoch lists, all of equal length; epochs are 1-based."""
    return {k: [] for k in HISTORY_KEYS}


def best_of(history: dict[str, list]) -> tuple[Optional[int], Optional[float], Optional[float]]:
    """(1-based epoch, val loss, val acc) of the lowest finite val loss in a history; Nones without one."""
    vals = [(v, i) for i, v in enumerate(history.get("val_loss", [])) if v is not None and math.isfinite(v)]
    if not vals:
        return None, None, None
    v, i = min(vals)
    acc = history.get("val_acc") or [None] * len(history["val_loss"])
    return history["epoch"][i], v, acc[i]


@dataclass
class RunSummary:
    """What a run reports; paths are relative to its run folder so a moved folder stays valid."""

    status: str = "running"  # running | completed | interrupted | failed
    kind: str = "run"  # run | kfold
    config: dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None
    n_params: Optional[int] = None
    # early_stopping | max_epochs | non_finite_loss | chosen_epoch | a signal | disk_full | not_writable | error
    stop_reason: Optional[str] = None
    epochs_run: int = 0
    global_step: Optional[int] = None
    best_epoch: Optional[int] = None
    best_val_loss: Optional[float] = None
    best_val_acc: Optional[float] = None
    history: dict[str, list] = field(default_factory=empty_history)
    test: Optional[dict[str, dict[str, float]]] = None  # {"best": {loss, acc}, "last": {loss, acc}}
    # gap_at_best, gap_last (val − train loss), onset_epoch (1-based), gap_slope (per epoch): stats.overfitting
    overfitting: Optional[dict[str, Optional[float]]] = None
    best_checkpoint: Optional[str] = None
    last_checkpoint: Optional[str] = None
    wall_time: float = 0.0
    exit_code: Optional[int] = None
    error: Optional[str] = None  # status failed: the exception
    notes: list[str] = field(default_factory=list)  # what a reader must know (e.g. why there are no best weights)
    # k-fold only: per-fold results, the mean curve's chosen epoch, the refit's folder (relative)
    folds: Optional[list[dict[str, Any]]] = None
    chosen_epoch: Optional[int] = None
    std_val_loss: Optional[list[float]] = None
    n_train: Optional[int] = None
    refit_dir: Optional[str] = None
    # trained as member `index` (0-based) of a population of `size` (lit_regularize.population); wall_time is then
    # the population's time until this member stopped, shared with the others
    population: Optional[dict[str, Any]] = None
    # where the summary lives; not written (the file's own folder is the truth)
    run_dir: Path = field(default=Path("."), compare=False)

    # -- paths -------------------------------------------------------------------------------------------
    @property
    def log_dir(self) -> str:
        """The run folder as a string."""
        return str(self.run_dir)

    def path(self, rel: Optional[str]) -> Optional[Path]:
        """A path recorded in the summary, resolved against the run folder (None stays None)."""
        return None if rel is None else self.run_dir / rel

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access to a field (summary['best_epoch'])."""
        if key == "log_dir":
            return self.log_dir
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style get."""
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    # -- JSON --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict as written to summary.json (run_dir left out)."""
        d = dataclasses.asdict(self)
        d.pop("run_dir")
        return d

    def write(self, run_dir: Optional[os.PathLike] = None) -> Path:
        """Atomically write summary.json into the run folder."""
        if run_dir is not None:
            self.run_dir = Path(run_dir)
        return write_json(self.run_dir / SUMMARY, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], run_dir: os.PathLike | str = ".") -> "RunSummary":
        """From summary.json's content; unknown keys (older versions) are ignored, old absolute paths kept."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "run_dir"}
        for k in ("best_val_loss", "best_val_acc"):
            if isinstance(known.get(k), str):  # non-finite floats are stored as strings
                known[k] = float(known[k])
        for k, values in (known.get("history") or {}).items():
            known["history"][k] = [float(v) if isinstance(v, str) else v for v in values]
        return cls(**known, run_dir=Path(run_dir))

    @classmethod
    def read(cls, path: os.PathLike | str) -> "RunSummary":
        """Read a run folder's summary.json (path: the file or its folder)."""
        p = Path(path)
        if p.is_dir():
            p = p / SUMMARY
        return cls.from_dict(read_json(p), p.parent)


__all__ = ["RunSummary", "SUMMARY", "HISTORY_KEYS", "empty_history", "best_of"]
