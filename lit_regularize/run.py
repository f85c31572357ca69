"""One training run from a Config: fit, evaluate best and last weights, write summary.json.

fit, sweep trials, k-fold and the benchmark all call `run`, so callbacks, logging and checkpoints behave the same
everywhere. This is the only place that maps a Config onto the components' own constructors.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytorch_lightning as pl

from lit_regularize.callbacks import History, InterruptReason
from lit_regularize.config import Config
from lit_regularize.data.base import SplitDataModule
from lit_regularize.errors import ConfigError, RunInterrupted, Terminated, UserError, on_sigterm
from lit_regularize.files import WriteFailed, write_failure
from lit_regularize.regularizers import MODEL, enabled_settings, settings_of
from lit_regularize.model import RegularizedMLP, count_parameters, layer_summary
from lit_regularize.rundir import RunDir
from lit_regularize.stats import overfitting
from lit_regularize.summary import RunSummary, best_of
from lit_regularize.trainer import TEST_PREFIX, RunLogger, callback, make_callbacks, make_trainer, quiet_lightning

# The settings shown as TensorBoard HParams: what describes the experiment (plus what a study searched).
HPARAM_KEYS = ("data", "reg", "hidden", "layers", "l1", "l2", "dropout", "batchnorm", "optimizer", "lr",
               "batch_size", "max_epochs")
RUN_DIR_ENV = "LIT_REGULARIZE_RUN_DIR"  # DDP ranks > 0 (started by Lightning as new processes) join rank 0's folder
INTERRUPTS = ("KeyboardInterrupt", "SIGTERMException", "Terminated")


def build_datamodule(cfg: Config) -> SplitDataModule:
    """The DataModule of cfg.data: its kind (lit_regularize.data.kinds) maps its own settings, the split's are
    every DataModule's."""
    split = dict(batch_size=cfg.batch_size, val_size=cfg.val_size, train_size=cfg.train_size,
                 val_on_test=cfg.val_on_test, kfold=cfg.kfold, fold=cfg.fold, merge_val=cfg.merge_val, seed=cfg.seed,
                 shuffle=cfg.shuffle, num_workers=cfg.num_workers)
    return cfg.kind.datamodule(cfg, split)


def build_model(cfg: Config, n_features: int, n_classes: int) -> RegularizedMLP:
    """The LightningModule with the model, optimization and regularizer settings of cfg."""
    values = cfg.to_dict()
    return RegularizedMLP(n_features, n_classes, hidden=cfg.hidden, layers=cfg.layers, optimizer=cfg.optimizer,
                          lr=cfg.lr, **{k: values[k] for k in settings_of(MODEL) if k in values})


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
def sigterm_as_exception() -> Iterator[_Signals]:
    """SIGTERM raises Terminated inside the block (outside Lightning's loops), so every way out writes a summary."""
    signals = _Signals()
    with on_sigterm(signals.handler):
        yield signals


@contextlib.contextmanager
def _quiet_event_writer() -> Iterator[None]:
    """TensorBoard writes event files in a thread of its own, which prints the traceback of a failed write (a full
    disk) before the training thread raises the same error at its next log call: that one is the run's one line."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if not (type(args.thread).__module__.startswith("tensorboard.") and args.exc_value is not None
                and write_failure(args.exc_value) is not None):
            previous(args)
    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) or 0)


def _new_run_dir(cfg: Config) -> RunDir:
    if _rank() > 0 and os.environ.get(RUN_DIR_ENV):
        return RunDir(os.environ[RUN_DIR_ENV])
    return RunDir.claim(cfg.logdir, cfg.run_name)


@contextlib.contextmanager
def _holding(rundir: RunDir, resuming: bool = False) -> Iterator[RunDir]:
    """rundir locked by this process for the whole run; DDP ranks > 0 work in rank 0's folder under rank 0's lock."""
    if _rank() > 0 or rundir.locked:
        yield rundir
        return
    rundir.lock()
    try:
        if resuming:
            rundir.check_writable()
        yield rundir
    finally:
        rundir.unlock()


def check_batchnorm(cfg: Config, dm: SplitDataModule) -> None:
    """BatchNorm cannot train on a one-example batch: Config refuses --batch-size 1, this a one-example training set."""
    n = len(dm.train_set) if cfg.batchnorm and dm.train_set is not None else None
    if n == 1:
        raise ConfigError("--batchnorm: the training set has 1 example, and BatchNorm cannot train on a one-example "
                          "batch; use more training examples or no --batchnorm / --reg batchnorm")


def run(cfg: Config, extra_callbacks: Sequence[pl.Callback] = (), resume: Optional[RunDir] = None,
        datamodule: Optional[SplitDataModule] = None, evaluate_test: bool = True,
        hparam_keys: Sequence[str] = (), save_last: bool = True,
        shown_models: Optional[set[str]] = None) -> RunSummary:
    """Fit cfg, test the best and last weights (unless evaluate_test is False), write summary.json; return it.

    save_last=False writes no checkpoints/last.ckpt (the run cannot be resumed; its best checkpoint is kept).
    shown_models: model tables printed already (a comparison prints each distinct model once); None: print it.

    Bad input fails before any folder exists. The run folder is locked while the run lasts: a resume of a run that
    is still going (or a second resume) is one error line. Every way out (done, Ctrl-C, SIGTERM, a full or
    read-only disk, a bug) leaves a summary.json (where it can still be written) whose status says which:
    completed, interrupted (RunInterrupted is raised) or failed (the error is re-raised; a write failure as one line).
    """
    t_start = time.perf_counter()
    if resume is not None and cfg.fold is not None:
        evaluate_test = False  # a k-fold fold never looks at the test set, resumed or not (only the refit does)
    if resume is not None:
        from lit_regularize.population.train import is_member_checkpoint, train_population

        if is_member_checkpoint(resume):  # a population member resumes as a population of one
            return train_population([cfg], [resume], evaluate_test=evaluate_test, save_last=save_last,
                                    hparam_keys=hparam_keys, shown_models=shown_models)[0]
    with contextlib.ExitStack() as held:
        if resume is not None:  # first of all: a resume of a run still going changes nothing, not even the RNG
            held.enter_context(_holding(resume, resuming=True))
        check_hardware(cfg)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = datamodule or build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("fit")  # bad data fails here, before any folder is created
        check_batchnorm(cfg, dm)
        model = build_model(cfg, dm.n_features, dm.n_classes)
        rundir = resume or held.enter_context(_holding(_new_run_dir(cfg)))
        return _train(cfg, dm, model, rundir, t_start, extra_callbacks, resume is not None, evaluate_test,
                      hparam_keys, save_last, shown_models)


def _train(cfg: Config, dm: SplitDataModule, model: RegularizedMLP, rundir: RunDir, t_start: float,
           extra_callbacks: Sequence[pl.Callback], resuming: bool, evaluate_test: bool, hparam_keys: Sequence[str],
           save_last: bool, shown_models: Optional[set[str]] = None) -> RunSummary:
    """run() in its (locked) run folder: fit, test, summary.json on every way out."""
    if resuming:  # wall_time counts every session of the run, not only this one
        with contextlib.suppress(Exception):
            t_start -= (rundir.read_summary() or RunSummary()).wall_time or 0.0
    # A resume retrains from last.ckpt: TensorBoard hides what a cut session logged for the epochs trained again
    # (purge_step), so each epoch keeps one point (a full disk or a kill may come after an epoch was logged).
    purge = rundir.checkpointed_epochs() + 1 if resuming else None
    logger = RunLogger(save_dir=str(rundir.path.parent), name="", version=rundir.path.name, default_hp_metric=False,
                       purge_step=purge)
    logger.hparams.update(cfg.to_dict())  # hparams.yaml holds the resolved config
    callbacks = make_callbacks(rundir.checkpoint_dir, dm.has_validation, cfg.patience, cfg.early_stopping,
                               cfg.progress, cfg.histogram_every, save_last) + list(extra_callbacks) + \
        [cb for r in model.regularizers for cb in r.callbacks()]
    trainer = make_trainer(logger, callbacks, cfg.max_epochs, cfg.accelerator, cfg.devices, cfg.strategy,
                           cfg.deterministic, cfg.progress)
    history_cb: History = callback(callbacks, History)
    interrupt_cb: InterruptReason = callback(callbacks, InterruptReason)
    summary = RunSummary(config=cfg.to_dict(), seed=cfg.seed, n_params=count_parameters(model), run_dir=rundir.path)
    zero = trainer.is_global_zero
    fitted = False
    with sigterm_as_exception() as signals, _quiet_event_writer():
        try:
            if zero:
                rundir.write_config(cfg)
                if not resuming:
                    rundir.write_split(dm.split_record())
                    rundir.write_artifacts(dm.artifacts())  # what predict needs, e.g. a text folder's word index
                summary.write()
                if cfg.progress:
                    table = layer_summary(model)
                    print(rundir.path if shown_models is not None and table in shown_models else
                          f"{rundir.path}\n{table}")
                    if shown_models is not None:
                        shown_models.add(table)
            os.environ[RUN_DIR_ENV] = str(rundir.path)
            ckpt = str(rundir.last_checkpoint) if resuming else None
            with signals.lightning():
                trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
            # Testing a checkpoint restores callback state, so keep the fit's own history first.
            history = copy.deepcopy(history_cb.history)
            _fill(summary, cfg, trainer, history, history_cb.non_finite, t_start)
            fitted = True
            # every rank tests the same weights (DDP collectives); only rank 0 removes stale best-* files
            best = rundir.keep_best(summary.best_epoch) if zero else rundir.best_checkpoints().get(summary.best_epoch)
            summary.best_checkpoint = rundir.rel(best)
            summary.last_checkpoint = rundir.rel(rundir.last_checkpoint) if save_last else None
            note_missing_best(summary, best, dm.has_validation, rundir, zero)
            if evaluate_test:
                with signals.lightning():
                    summary.test = {"last": _test(trainer, model, dm, None, TEST_PREFIX["last"],
                                                  summary.epochs_run)}
                    if best is not None:
                        summary.test["best"] = _test(trainer, model, dm, str(best), TEST_PREFIX["best"],
                                                     summary.best_epoch)
                    elif not dm.has_validation:  # nothing validated: the last weights are the run's chosen ones
                        summary.test["best"] = summary.test["last"]
            summary.status, summary.exit_code, summary.wall_time = "completed", 0, time.perf_counter() - t_start
            if zero:
                log_overfitting(logger, summary)
                log_hparams(logger, cfg, summary, hparam_keys, again=resuming and has_hparams_record(rundir.path))
                logger.finalize("success")
                summary.write()
        except BaseException as e:
            failure = write_failure_of(e, rundir, save_last)
            reason = None if failure is not None else interrupt_reason(e, interrupt_cb.interrupted_by)
            if not fitted:  # cut short in the fit (after it, a test pass may have restored older callback state)
                _fill(summary, cfg, trainer, history_cb.history, history_cb.non_finite, t_start)
            if zero and summary.best_checkpoint is None:  # the checkpoints written so far, for predict / compare
                with contextlib.suppress(Exception):
                    summary.best_checkpoint = rundir.rel(rundir.best_checkpoints().get(summary.best_epoch))
                    if save_last and rundir.last_checkpoint.is_file():
                        summary.last_checkpoint = rundir.rel(rundir.last_checkpoint)
            error = failure or e
            summary.status = "interrupted" if reason else "failed"
            summary.test = None  # a test pass cut short reports nothing rather than half
            # what ended the run, not what _fill guessed from a fit cut short (it said max_epochs after 1 of 3)
            summary.stop_reason = reason or (failure.reason if failure is not None else "error")
            summary.exit_code = 130 if reason else (2 if isinstance(error, UserError) else 1)
            if not reason:
                summary.error = f"{type(error).__name__}: {error}"
            if zero:
                with contextlib.suppress(Exception):  # on a full or read-only disk this may fail too
                    summary.write()
            if reason:
                raise RunInterrupted(rundir.path, reason) from None
            if failure is not None:
                raise failure from None  # one line, not torch's '[enforce fail at inline_container.cc]' traceback
            raise
        finally:
            os.environ.pop(RUN_DIR_ENV, None)
    # DDP: every rank returns rank 0's summary.
    return trainer.strategy.broadcast(summary)


def write_failure_of(e: BaseException, rundir: RunDir, save_last: bool) -> Optional[WriteFailed]:
    """A full disk or a read-only folder met anywhere in the run (checkpoints, summary.json, config.yaml, event files,
    hparams.yaml) as one line that says how to go on, else None."""
    failure = write_failure(e, fallback=rundir.path)
    if failure is None:
        return None
    if save_last and rundir.last_checkpoint.is_file():
        return failure.with_hint(f"{failure.fix}, then resume with --resume {rundir.path} (its last complete epoch "
                                 "is kept)")
    return failure.with_hint(f"{failure.fix}, then start the run again")


def note_missing_best(summary: RunSummary, best: Optional[Path], validated: bool, rundir: RunDir,
                       zero: bool) -> None:
    """Say (summary.notes, a warning line) why a run that validated has no best weights to test; the last weights
    are never reported as the best ones."""
    if best is not None or not validated or summary.epochs_run == 0:
        return
    if summary.best_epoch is not None:
        name = f"best-epoch{summary.best_epoch:03d}.ckpt"
        note = (f"the best checkpoint {rundir.rel(rundir.checkpoint_dir / name)} (epoch {summary.best_epoch}) is "
                "missing: no test scores for the best weights, only for the last")
    else:
        note = ("the validation loss was never finite (the run diverged): no best weights, test scores only for "
                "the last")
    summary.notes.append(note)
    if zero:
        print(f"warning: {rundir.path}: {note}", file=sys.stderr)


def interrupt_reason(e: BaseException, seen_by_lightning: Optional[str]) -> Optional[str]:
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
    summary.overfitting = overfitting(history, summary.best_epoch)
    if non_finite:
        summary.stop_reason = "non_finite_loss"
    elif summary.epochs_run < cfg.max_epochs and trainer.should_stop:
        summary.stop_reason = "early_stopping"
    else:
        summary.stop_reason = "max_epochs"
    summary.wall_time = time.perf_counter() - t_start


# TensorBoard's landing page opens the first two tag groups by name (train/, val/: docs/training.md): a group
# named `overfitting/` would open before the curves, and val/ holds per-epoch curves; `val_overfitting` sorts
# right after val/ ("/" before letters).
OVERFITTING_PREFIX = "val_overfitting"


def log_overfitting(logger: RunLogger, summary: RunSummary) -> None:
    """The run's overfitting numbers (summary.overfitting) as `val_overfitting/...` scalars at its last epoch."""
    numbers = {f"{OVERFITTING_PREFIX}/{k}": float(v) for k, v in (summary.overfitting or {}).items()
               if v is not None}
    if numbers and summary.epochs_run:
        logger.log_metrics(numbers, step=summary.epochs_run)


def log_hparams(logger: RunLogger, cfg: Config, summary: RunSummary, extra_keys: Sequence[str],
                 again: bool) -> None:
    """The HParams record: the experiment's settings, booleans as booleans, with the run's real metrics.

    The metrics are scalars users already read beside the curves (no `hp/` group of single points at step 0 on
    TensorBoard's landing page): val/best_loss|acc, one point at the best epoch, and the test passes' own
    withheld/best/acc and withheld/last/acc (TEST_PREFIX)."""
    best = {"val/best_loss": summary.best_val_loss, "val/best_acc": summary.best_val_acc}
    if summary.best_epoch is not None:
        logger.log_metrics({k: v for k, v in best.items() if v is not None}, step=summary.best_epoch)
    test = summary.test or {}  # no "best" when the best checkpoint is missing or the run never validated finitely
    metrics = {**best, **{f"{TEST_PREFIX[w]}/acc": test[w]["acc"] for w in ("best", "last") if w in test}}
    if again:  # a resumed run that already has its HParams record: the scalars above update its metrics
        return
    values = cfg.to_dict()
    # plus the settings of every regularizer the run switches on (label_smoothing, ema_decay, ...)
    params = {k: values[k] for k in (*HPARAM_KEYS, *extra_keys, *enabled_settings(values)) if k in values}
    params = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in params.items()}
    logger.log_hyperparams(params, {k: (float("nan") if v is None else v) for k, v in metrics.items()})


def has_hparams_record(run_dir: os.PathLike) -> bool:
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


__all__ = ["run", "build_datamodule", "build_model", "check_hardware", "check_batchnorm", "quiet_lightning",
           "log_overfitting", "log_hparams", "has_hparams_record", "note_missing_best", "write_failure_of", "interrupt_reason",
           "sigterm_as_exception", "HPARAM_KEYS", "Terminated", "OVERFITTING_PREFIX"]
