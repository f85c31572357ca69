"""One training run from a Config: fit, evaluate best and last weights, write summary.json.

fit, sweep trials, k-fold and the benchmark all call `run`, so callbacks, logging and checkpoints behave the same
everywhere. This is the only place that maps a Config onto the components' own constructors.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytorch_lightning as pl

from lit_regularize.callbacks import History, InterruptReason
from lit_regularize.config import Config
from lit_regularize.data.base import SplitDataModule
from lit_regularize.data.own import write_artifacts
from lit_regularize.errors import ConfigError, RunInterrupted, UserError
from lit_regularize.model import RegularizedMLP, count_parameters, layer_summary
from lit_regularize.rundir import RunDir
from lit_regularize.summary import RunSummary, best_of
from lit_regularize.trainer import RunLogger, callback, make_callbacks, make_trainer

# The settings shown as TensorBoard HParams: what describes the experiment (plus what a study searched).
HPARAM_KEYS = ("data", "reg", "hidden", "layers", "l1", "l2", "dropout", "batchnorm", "optimizer", "lr",
               "batch_size", "max_epochs")
RUN_DIR_ENV = "LIT_REGULARIZE_RUN_DIR"  # DDP ranks > 0 (started by Lightning as new processes) join rank 0's folder
INTERRUPTS = ("KeyboardInterrupt", "SIGTERMException", "Terminated")


class Terminated(BaseException):
    """SIGTERM outside Lightning's own handling (set-up, between fit and test, writing the summary)."""


def build_datamodule(cfg: Config) -> SplitDataModule:
    """The DataModule of cfg.data with its own arguments."""
    split = dict(batch_size=cfg.batch_size, val_size=cfg.val_size, train_size=cfg.train_size,
                 val_on_test=cfg.val_on_test, kfold=cfg.kfold, fold=cfg.fold, merge_val=cfg.merge_val, seed=cfg.seed,
                 shuffle=cfg.shuffle, num_workers=cfg.num_workers)
    if cfg.data == "imdb":
        from lit_regularize.data.imdb import IMDBDataModule

        return IMDBDataModule(cfg.resolved_data_dir(), num_words=cfg.num_words, dense=cfg.input_format == "dense",
                              **split)
    if cfg.data in ("mnist", "fashion_mnist"):
        from lit_regularize.data.mnist import MNISTDataModule

        return MNISTDataModule(cfg.resolved_data_dir(), name=cfg.data, n_per_class=cfg.n_per_class,  # type: ignore
                               augment=cfg.augment, hflip=cfg.hflip, **split)
    from lit_regularize.data.custom import custom_datamodule

    return custom_datamodule(cfg, split)


def build_model(cfg: Config, n_features: int, n_classes: int) -> RegularizedMLP:
    """The LightningModule with the model and optimization settings of cfg."""
    return RegularizedMLP(n_features, n_classes, hidden=cfg.hidden, layers=cfg.layers, dropout=cfg.dropout,
                          batchnorm=cfg.batchnorm, bn_position=cfg.bn_position, l1=cfg.l1, l2=cfg.l2,
                          l1_layers=cfg.l1_layers, l2_layers=cfg.l2_layers, optimizer=cfg.optimizer, lr=cfg.lr,
                          weight_decay=cfg.weight_decay)


def check_hardware(cfg: Config) -> None:
    """An accelerator or device count the machine does not have is one error line, before any folder exists."""
    import torch

    if cfg.accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count()
        if not available:
            raise ConfigError(f"--accelerator {cfg.accelerator}: no GPU is available on this machine "
                              "(use --accelerator cpu or auto)")
        d = cfg.devices.strip()
        wanted = int(d) if d.isdigit() else len(d.split(",")) if "," in d else 1
        if wanted > available:
            raise ConfigError(f"--devices {cfg.devices}: only {available} GPU(s) available")
    if cfg.accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("--accelerator mps: Apple's MPS is not available on this machine")


class _Signals:
    """SIGTERM as an exception around the whole run; inside Lightning's loops Lightning's own handling applies."""

    def __init__(self) -> None:
        self.received = False
        self.in_lightning = False

    def handler(self, signum: int, frame: Any) -> None:
        self.received = True
        if not self.in_lightning:
            raise Terminated()

    @contextlib.contextmanager
    def lightning(self) -> Iterator[None]:
        """Around trainer.fit / trainer.test: a SIGTERM that Lightning swallowed still ends the run after it."""
        self.in_lightning = True
        try:
            yield
        finally:
            self.in_lightning = False
        if self.received:
            raise Terminated()


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[_Signals]:
    signals = _Signals()
    try:
        previous = signal.signal(signal.SIGTERM, signals.handler)
    except ValueError:  # not the main thread: leave signals alone
        yield signals
        return
    try:
        yield signals
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) or 0)


def _run_dir(cfg: Config, resume: Optional[RunDir]) -> RunDir:
    if resume is not None:
        return resume
    if _rank() > 0 and os.environ.get(RUN_DIR_ENV):
        return RunDir(os.environ[RUN_DIR_ENV])
    return RunDir.claim(cfg.logdir, cfg.run_name)


def run(cfg: Config, extra_callbacks: Sequence[pl.Callback] = (), resume: Optional[RunDir] = None,
        datamodule: Optional[SplitDataModule] = None, evaluate_test: bool = True,
        hparam_keys: Sequence[str] = (), save_last: bool = True) -> RunSummary:
    """Fit cfg, test the best and last weights (unless evaluate_test is False), write summary.json; return it.

    save_last=False writes no checkpoints/last.ckpt (the run cannot be resumed; its best checkpoint is kept).

    Bad input fails before any folder exists. Every way out (done, Ctrl-C, SIGTERM, a bug) leaves a summary.json
    whose status says which: completed, interrupted (RunInterrupted is raised) or failed (the error is re-raised).
    """
    t_start = time.perf_counter()
    check_hardware(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = datamodule or build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")  # bad data fails here, before any folder is created
    model = build_model(cfg, dm.n_features, dm.n_classes)
    rundir = _run_dir(cfg, resume)
    if resume is not None:  # wall_time counts every session of the run, not only this one
        with contextlib.suppress(Exception):
            t_start -= (rundir.read_summary() or RunSummary()).wall_time or 0.0
    logger = RunLogger(save_dir=str(rundir.path.parent), name="", version=rundir.path.name, default_hp_metric=False)
    logger.hparams.update(cfg.to_dict())  # hparams.yaml holds the resolved config
    callbacks = make_callbacks(rundir.checkpoint_dir, dm.has_validation, cfg.patience, cfg.early_stopping,
                               cfg.progress, cfg.histogram_every, save_last) + list(extra_callbacks)
    trainer = make_trainer(logger, callbacks, cfg.max_epochs, cfg.accelerator, cfg.devices, cfg.strategy,
                           cfg.deterministic, cfg.progress)
    history_cb: History = callback(callbacks, History)
    interrupt_cb: InterruptReason = callback(callbacks, InterruptReason)
    summary = RunSummary(config=cfg.to_dict(), seed=cfg.seed, n_params=count_parameters(model), run_dir=rundir.path)
    zero = trainer.is_global_zero
    with _sigterm_as_exception() as signals:
        try:
            if zero:
                rundir.write_config(cfg)
                if resume is None:
                    rundir.write_split(dm.split_record())
                    write_artifacts(dm, rundir.path)  # e.g. an own text folder's word index, for predict
                summary.write()
                if cfg.progress:
                    print(f"{rundir.path}\n{layer_summary(model)}")
            os.environ[RUN_DIR_ENV] = str(rundir.path)
            ckpt = str(rundir.last_checkpoint) if resume is not None else None
            with signals.lightning():
                trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
            # Testing a checkpoint restores callback state, so keep the fit's own history first.
            history = copy.deepcopy(history_cb.history)
            _fill(summary, cfg, trainer, history, history_cb.non_finite, t_start)
            # every rank tests the same weights (DDP collectives); only rank 0 removes stale best-* files
            best = rundir.keep_best(summary.best_epoch) if zero else rundir.best_checkpoints().get(summary.best_epoch)
            summary.best_checkpoint = rundir.rel(best)
            summary.last_checkpoint = rundir.rel(rundir.last_checkpoint) if save_last else None
            if evaluate_test:
                with signals.lightning():
                    summary.test = {"last": _test(trainer, model, dm, None, "test_last", summary.epochs_run)}
                    # A run that was never finite has no best epoch: its best weights are its last.
                    summary.test["best"] = (_test(trainer, model, dm, str(best), "test_best", summary.best_epoch)
                                            if best is not None else summary.test["last"])
            summary.status, summary.exit_code, summary.wall_time = "completed", 0, time.perf_counter() - t_start
            if zero:
                _log_hparams(logger, cfg, summary, hparam_keys, again=resume is not None and
                             _has_hparams_record(rundir.path))
                logger.finalize("success")
                summary.write()
        except BaseException as e:
            reason = _interrupt_reason(e, interrupt_cb.interrupted_by)
            interrupted = reason is not None
            if summary.epochs_run == 0:  # not filled yet (a later test pass may have restored older callback state)
                _fill(summary, cfg, trainer, history_cb.history, history_cb.non_finite, t_start)
            if zero and summary.best_checkpoint is None:  # the checkpoints written so far, for predict / compare
                with contextlib.suppress(Exception):
                    summary.best_checkpoint = rundir.rel(rundir.best_checkpoints().get(summary.best_epoch))
                    if save_last and rundir.last_checkpoint.is_file():
                        summary.last_checkpoint = rundir.rel(rundir.last_checkpoint)
            summary.status = "interrupted" if interrupted else "failed"
            summary.test = None  # a test pass cut short reports nothing rather than half
            summary.stop_reason = reason or summary.stop_reason
            summary.exit_code = 130 if interrupted else (2 if isinstance(e, UserError) else 1)
            if not interrupted:
                summary.error = f"{type(e).__name__}: {e}"
            if zero:
                with contextlib.suppress(Exception):
                    summary.write()
            if interrupted:
                raise RunInterrupted(rundir.path, reason) from None
            raise
        finally:
            os.environ.pop(RUN_DIR_ENV, None)
    # DDP: every rank returns rank 0's summary.
    return trainer.strategy.broadcast(summary)


def _interrupt_reason(e: BaseException, seen_by_lightning: Optional[str]) -> Optional[str]:
    """"KeyboardInterrupt" or "SIGTERM" when the run was interrupted, else None (a failure). Lightning may
    re-raise Ctrl-C / SIGTERM as another exception, so what its on_exception hook saw first counts."""
    name = type(e).__name__ if isinstance(e, Terminated) or seen_by_lightning not in INTERRUPTS else seen_by_lightning
    name = "SIGTERM" if name in ("SIGTERMException", "Terminated") else name
    return name if name in ("KeyboardInterrupt", "SIGTERM") else None


def _test(trainer: pl.Trainer, model: RegularizedMLP, dm: SplitDataModule, ckpt: Optional[str],
          prefix: str, epoch: Optional[int]) -> dict[str, float]:
    """Test one set of weights; TensorBoard gets `prefix`/loss|acc at the (1-based) epoch of those weights."""
    model.test_prefix = prefix
    logger = trainer.logger if isinstance(trainer.logger, RunLogger) else None
    if logger is not None:
        logger.fixed_step = epoch
    try:
        out = trainer.test(model, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    finally:
        if logger is not None:
            logger.fixed_step = None
    return {"loss": float(out[f"{prefix}/loss"]), "acc": float(out[f"{prefix}/acc"])}


def _fill(summary: RunSummary, cfg: Config, trainer: pl.Trainer, history: dict[str, list], non_finite: bool,
          t_start: float) -> None:
    """Epochs, best epoch and stop reason from the fit's history."""
    summary.history = history
    summary.epochs_run = len(history["epoch"])
    summary.global_step = trainer.global_step
    summary.best_epoch, summary.best_val_loss, summary.best_val_acc = best_of(history)
    if non_finite:
        summary.stop_reason = "non_finite_loss"
    elif summary.epochs_run < cfg.max_epochs and trainer.should_stop:
        summary.stop_reason = "early_stopping"
    else:
        summary.stop_reason = "max_epochs"
    summary.wall_time = time.perf_counter() - t_start


def _log_hparams(logger: RunLogger, cfg: Config, summary: RunSummary, extra_keys: Sequence[str],
                 again: bool) -> None:
    """The HParams record: the experiment's settings, booleans as booleans, with the run's real metrics.

    The metrics are scalars users already read beside the curves (no `hp/` group of single points at step 0 on
    TensorBoard's landing page): val/best_loss|acc, one point at the best epoch, and the test passes' own
    test_best/acc and test_last/acc."""
    best = {"val/best_loss": summary.best_val_loss, "val/best_acc": summary.best_val_acc}
    if summary.best_epoch is not None:
        logger.log_metrics({k: v for k, v in best.items() if v is not None}, step=summary.best_epoch)
    metrics = {**best, **({"test_best/acc": summary.test["best"]["acc"], "test_last/acc": summary.test["last"]["acc"]}
                          if summary.test else {})}
    if again:  # a resumed run that already has its HParams record: the scalars above update its metrics
        return
    values = cfg.to_dict()
    params = {k: values[k] for k in (*HPARAM_KEYS, *extra_keys) if k in values}
    params = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in params.items()}
    logger.log_hyperparams(params, {k: (float("nan") if v is None else v) for k, v in metrics.items()})


def _has_hparams_record(run_dir: os.PathLike) -> bool:
    """Whether an event file of the run folder already holds an HParams session (a resume of a run that once
    finished, also one interrupted again since): a second record would show the run twice in the HParams tab."""
    from tensorboard.plugins.hparams.metadata import SESSION_START_INFO_TAG

    tag = SESSION_START_INFO_TAG.encode()
    return any(tag in p.read_bytes() for p in Path(run_dir).glob("events.out.tfevents.*") if p.is_file())


@atexit.register
def _destroy_process_group() -> None:
    """Lightning destroys the process group at exit only for NCCL; a live gloo group's threads can abort the
    interpreter's shutdown (SIGABRT, 'terminate called without an active exception')."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def quiet_lightning() -> None:
    """Keep Lightning's info lines (GPU/TPU availability, LOCAL_RANK) out of command output."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["run", "build_datamodule", "build_model", "check_hardware", "quiet_lightning", "HPARAM_KEYS",
           "Terminated"]
