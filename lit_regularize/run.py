"""One training run from a Config: fit, evaluate best and last weights, write summary.json.

fit.py, sweep trials, k-fold and the benchmark all call `run`, so callbacks, logging and checkpoints
behave the same everywhere.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger

from lit_regularize.callbacks import History, InterruptReason
from lit_regularize.config import Config, config_from_run_dir
from lit_regularize.data import SplitDataModule, build_datamodule
from lit_regularize.errors import UserError
from lit_regularize.files import AtomicCheckpointIO, write_json, write_yaml
from lit_regularize.model import RegularizedMLP, count_parameters

SUMMARY = "summary.json"
MONITOR = "val/loss"

# Lightning's advice-level chatter (no GPU found, few workers, small logging interval) drowns the useful lines.
for _msg in (".*does not have many workers.*", ".*number of training batches.*", ".*GPU available but not used.*",
             ".*The total number of parameters detected.*", ".*Checkpoint directory.*exists and is not empty.*",
             ".*LeafSpec.*", ".*treespec.*", ".*overridden `transfer_batch_to_device`.*"):
    warnings.filterwarnings("ignore", message=_msg)


class RunInterrupted(Exception):
    """Training was stopped by Ctrl-C or SIGTERM; summary.json was written with status 'interrupted'."""

    def __init__(self, log_dir: Path, reason: str) -> None:
        super().__init__(f"interrupted ({reason}); resume with --resume {log_dir}")
        self.log_dir = log_dir


class RunLogger(TensorBoardLogger):
    """TensorBoard logger that writes hparams only once, at the end, with real metrics (no hp_metric=-1)."""

    def log_hyperparams(self, params: Any, metrics: Optional[dict[str, Any]] = None) -> None:
        if metrics is not None:
            super().log_hyperparams(params, metrics)


def flat_hparams(cfg: Config) -> dict[str, Any]:
    """Config as TensorBoard-HParams-safe scalars."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in cfg.to_dict().items()}


def make_logger(cfg: Config, version: Optional[int] = None) -> RunLogger:
    """TensorBoard logger at <logdir>/<name>/version_<k>."""
    return RunLogger(save_dir=cfg.logdir, name=cfg.run_name, version=version, default_hp_metric=False)


def make_callbacks(cfg: Config, ckpt_dir: Path, validating: bool) -> list[pl.Callback]:
    """Checkpoint on best val/loss (+ last), EarlyStopping (always checking for NaN/inf), history."""
    # Lightning 2.6's save_last only writes when a top-k checkpoint was written in the same step, so last.ckpt
    # would lag at the best epoch; a monitor-less checkpoint named "last" is rewritten every epoch instead.
    callbacks: list[pl.Callback] = [History(), InterruptReason(),
                                    ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                                    enable_version_counter=False)]
    if validating:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best-epoch{epoch:03d}", monitor=MONITOR,
                                         mode="min", save_top_k=1, auto_insert_metric_name=False))
        # With --no-early-stopping the callback still ends a run whose val/loss turns NaN/inf.
        patience = cfg.patience if cfg.early_stopping else 10 ** 9
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=patience, check_finite=True))
    # A NaN/inf training loss ends the run as well, also when nothing is validated (e.g. a k-fold refit).
    callbacks.append(EarlyStopping(monitor="train/loss", mode="min", patience=10 ** 9, check_finite=True,
                                   check_on_train_epoch_end=True))
    from lit_regularize.tb_extras import TensorBoardExtras  # weight histograms, augmented-image grid

    callbacks.append(TensorBoardExtras())
    if cfg.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    return callbacks


def make_trainer(cfg: Config, logger: Any, callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    """The Trainer every run uses."""
    devices: Any = cfg.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    return pl.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=devices, strategy=cfg.strategy,
        logger=logger, callbacks=list(callbacks), deterministic=cfg.deterministic,
        enable_progress_bar=cfg.progress, enable_model_summary=cfg.progress, num_sanity_val_steps=0,
        log_every_n_steps=50, plugins=[AtomicCheckpointIO()],
    )


def _test(trainer: pl.Trainer, model: RegularizedMLP, dm: SplitDataModule, ckpt: Optional[str]) -> dict[str, float]:
    out = trainer.test(model, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    return {"loss": float(out["test/loss"]), "acc": float(out["test/acc"])}


def _callback(callbacks: Sequence[pl.Callback], kind: type) -> Any:
    return next((c for c in callbacks if isinstance(c, kind)), None)


def best_of(history: dict[str, list]) -> tuple[Optional[int], Optional[float], Optional[float]]:
    """(1-based epoch, val loss, val acc) of the lowest finite val loss in a history."""
    vals = [(v, i) for i, v in enumerate(history.get("val_loss", [])) if v is not None and math.isfinite(v)]
    if not vals:
        return None, None, None
    v, i = min(vals)
    return history["epoch"][i], v, history["val_acc"][i]


def latest_version(cfg: Config) -> Path:
    """The newest version_<k> folder of cfg's run name (for --resume without a folder)."""
    root = Path(cfg.logdir) / cfg.run_name
    versions = sorted(root.glob("version_*"), key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1]
                      .isdigit() else -1)
    if not versions:
        raise UserError(f"--resume: no runs under {root}")
    return versions[-1]


def resume_config(run_dir: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Config:
    """The saved config of run_dir, with overrides (e.g. a larger max_epochs)."""
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise UserError(f"--resume {run_dir}: no checkpoints/last.ckpt to resume from")
    return config_from_run_dir(run_dir).replace(**(overrides or {}))


def run(cfg: Config, extra_callbacks: Sequence[pl.Callback] = (), resume_dir: Optional[str | os.PathLike] = None,
        datamodule: Optional[SplitDataModule] = None, version: Optional[int] = None) -> dict[str, Any]:
    """Fit cfg, test the best and last weights, write summary.json in the run folder and return it."""
    t_start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = datamodule or build_datamodule(cfg)
    dm.setup("fit")  # bad data fails here, before any folder is created
    model = RegularizedMLP(cfg.to_dict(), dm.n_features, dm.n_classes)
    if resume_dir is not None:
        version = int(Path(resume_dir).name.split("_")[-1])
    logger = make_logger(cfg, version)
    log_dir = Path(logger.log_dir)
    ckpt_dir = log_dir / "checkpoints"
    callbacks = make_callbacks(cfg, ckpt_dir, dm.has_validation) + list(extra_callbacks)
    trainer = make_trainer(cfg, logger, callbacks)
    if trainer.is_global_zero:
        try:
            write_yaml(log_dir / "config.yaml", cfg.to_dict())
        except OSError as e:
            raise UserError(f"--logdir {cfg.logdir}: cannot create the run folder {log_dir} ({e.strerror})") from None
        split = {k: v for k, v in dm.split_record().items() if v is not None}
        np.savez_compressed(log_dir / "split.npz", **split)
    ckpt_path = str(ckpt_dir / "last.ckpt") if resume_dir is not None else None
    history_cb: History = _callback(callbacks, History)
    interrupt_cb: InterruptReason = _callback(callbacks, InterruptReason)
    summary: dict[str, Any] = {"status": "running", "config": cfg.to_dict(), "seed": cfg.seed,
                               "n_params": count_parameters(model), "log_dir": str(log_dir),
                               "version": logger.version}
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    except BaseException as e:  # Lightning turns Ctrl-C into sys.exit(1) and SIGTERM into SIGTERMException
        reason = interrupt_cb.interrupted_by or type(e).__name__
        if reason not in ("KeyboardInterrupt", "SIGTERMException"):
            raise
        summary.update(_finish(cfg, trainer, history_cb, ckpt_dir, None, None, t_start))
        summary.update(status="interrupted", stop_reason=reason)
        if trainer.is_global_zero:
            write_json(log_dir / SUMMARY, summary)
        raise RunInterrupted(log_dir, reason) from None
    # Testing a checkpoint restores callback state, so keep the fit's own history first.
    fitted_history = copy.deepcopy(history_cb.history)
    test = {"last": _test(trainer, model, dm, None)}
    ckpt_cb = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor == MONITOR), None)
    # A run that was never finite has no best epoch, so no best checkpoint either.
    best_path = ckpt_cb.best_model_path if ckpt_cb is not None and best_of(fitted_history)[0] else ""
    if best_path:
        test["best"] = _test(trainer, model, dm, best_path)
    else:
        test["best"] = test["last"]
    history_cb.history = fitted_history
    summary.update(_finish(cfg, trainer, history_cb, ckpt_dir, test, best_path, t_start))
    summary["status"] = "completed"
    if trainer.is_global_zero:
        metrics = {"hp/best_val_loss": summary["best_val_loss"], "hp/best_val_acc": summary["best_val_acc"],
                   "hp/test_acc_best": test["best"]["acc"], "hp/test_acc_last": test["last"]["acc"]}
        logger.log_hyperparams(flat_hparams(cfg), {k: (v if v is not None else float("nan"))
                                                   for k, v in metrics.items()})
        logger.finalize("success")
        write_json(log_dir / SUMMARY, summary)
    # DDP: ranks > 0 guessed their own version folder before the launch; every rank returns rank 0's summary.
    return trainer.strategy.broadcast(summary)


def _finish(cfg: Config, trainer: pl.Trainer, history_cb: History, ckpt_dir: Path,
            test: Optional[dict], best_path: Optional[str], t_start: float) -> dict[str, Any]:
    history = history_cb.history
    best_epoch, best_val_loss, best_val_acc = best_of(history)
    if history_cb.non_finite:
        reason = "non_finite_loss"
    elif len(history["epoch"]) < cfg.max_epochs and trainer.should_stop:
        reason = "early_stopping"
    else:
        reason = "max_epochs"
    return {"stop_reason": reason, "epochs_run": len(history["epoch"]), "global_step": trainer.global_step,
            "best_epoch": best_epoch, "best_val_loss": best_val_loss, "best_val_acc": best_val_acc,
            "history": history, "test": test, "best_checkpoint": best_path or None,
            "last_checkpoint": str(ckpt_dir / "last.ckpt"), "wall_time": time.perf_counter() - t_start}


def quiet_lightning() -> None:
    """Keep Lightning's info lines (GPU/TPU availability, LOCAL_RANK) out of script output."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["run", "RunInterrupted", "SUMMARY", "MONITOR", "best_of", "latest_version", "resume_config",
           "make_callbacks", "make_trainer", "make_logger", "quiet_lightning"]
