"""The objective: one `run()` per trial (k-fold: one per fold through `kfold.evaluate_folds`), validation only.

No trial sees the test set (`run(..., evaluate_test=False)`). The trial value is the best val/loss of the run;
with --kfold it is what `fit --kfold` reports: the mean validation curve's lowest value (the mean-curve rule).
val/loss is reported to the pruner after every epoch at step fold*max_epochs + epoch (epoch 1-based).
With --objectives val/loss,params the trial returns (best val/loss, parameter count) and nothing is reported:
Optuna cannot prune multi-objective studies.
"""
from __future__ import annotations

import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import optuna
import pytorch_lightning as pl

from lit_regularize.config import Config, make_config
from lit_regularize.errors import RunInterrupted, UserError
from lit_regularize.summary import RunSummary
from lit_regularize.sweeps.space import parse_space, suggest
from lit_regularize.sweeps.storage import already_requeued
from lit_regularize.sweeps.study import Sweep


# Set by a worker's SIGTERM handler outside run() (e.g. its sweep process died): the trial is interrupted at the next
# safe point (the objective's start, a training epoch's start) instead of inside a storage transaction.
STOP = threading.Event()
# Set while a worker is inside a trial's body: only then does its Ctrl-C raise (workers._on_int_worker). Raised
# anywhere else it would land in Optuna's bookkeeping, often at the objective's first instruction (where Python
# delivers a signal that arrived during ask()), and fail the trial without queueing it again.
IN_TRIAL = threading.Event()


def machine_id() -> str:
    """hostname + boot id + pid namespace: equal only where the same process ids are visible."""
    parts = [socket.gethostname()]
    try:  # hostnames repeat across VMs and containers; boot id and pid namespace tell them apart
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
        parts.append(os.readlink("/proc/self/ns/pid").strip("pid:[]"))
    except OSError:
        pass
    return "/".join(parts)


def worker_id() -> str:
    """machine:pid of this process, recorded on each trial so dead local workers can be found."""
    return f"{machine_id()}:{os.getpid()}"


class PruningCallback(pl.Callback):
    """Report val/loss to the trial after every validation; stop the fit once the pruner says so.

    Own class: optuna-integration's callback imports lightning.pytorch, whose classes do not mix with
    pytorch_lightning's Trainer. Stopping (not raising) lets run() still write a complete summary.json.
    The pruner is not asked when this epoch ends the trial anyway (its last epoch, or early stopping):
    pruning then saves nothing and would throw a finished result away. report=False (multi-objective studies)
    neither reports nor prunes. The model's parameter count is taken when the fit starts, before training."""

    def __init__(self, trial: optuna.Trial, step_offset: int = 0, last_run: bool = True,
                 report: bool = True) -> None:
        self.trial, self.step_offset, self.last_run, self.report = trial, step_offset, last_run, report
        self.pruned_at: Optional[int] = None  # 1-based epoch
        self.n_params: Optional[int] = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lit_regularize.model import count_parameters

        self.n_params = count_parameters(pl_module)
        self.trial.set_user_attr("n_params", self.n_params)  # shown at once (dashboard), pruned trials too

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if STOP.is_set():
            raise KeyboardInterrupt  # run() ends as interrupted; the objective queues the trial again

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lit_regularize.trainer import MONITOR

        value = trainer.callback_metrics.get(MONITOR)
        if not self.report or trainer.sanity_checking or value is None or not math.isfinite(float(value)):
            return  # non-finite: run()'s EarlyStopping(check_finite) ends the fit
        epoch = trainer.current_epoch + 1
        self.trial.report(float(value), self.step_offset + epoch)
        ends_anyway = epoch >= trainer.max_epochs or trainer.should_stop
        if ends_anyway and self.last_run:
            return
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True


class _Pruned(Exception):
    """A fold was pruned: stop the remaining folds."""

    def __init__(self, summary: RunSummary, step: int) -> None:
        super().__init__(f"pruned at step {step}")
        self.summary, self.step = summary, step


# Trials log no weight histograms unless --histogram-every is given: nobody reads dozens of trials' histograms, and
# at hidden 512 they are a fixed cost per epoch that a short trial pays in full. Val loss is unaffected.
# No progress bars unless --progress is given: parallel workers' bars interleave. Defaults of the trials, not
# settings the user gave: the study records (and its report lists) only those.
TRIAL_DEFAULTS = {"histogram_every": 0, "progress": False}


def trial_config(sweep: Sweep, params: Mapping[str, Any], number: int) -> Config:
    """The fixed settings + the trial's params, logging to <logdir>/<study>/trial_<n>."""
    return make_config({**TRIAL_DEFAULTS, **sweep.fixed, **params, "name": f"{sweep.study_name}/trial_{number:04d}"},
                       source=f"trial {number}")


def _record(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _finite(v: Optional[float]) -> Optional[float]:
    return v if v is not None and math.isfinite(v) else None


def _fold_epochs(folds: Sequence[RunSummary]) -> dict[str, Any]:
    """A k-fold trial's epochs as people read them: epochs_run per fold (the most any fold ran; a fit's max-epochs,
    not their sum) and folds_run; the work done is the sum of the folds' epochs (epochs_trained)."""
    return {"epochs_run": max((s.epochs_run for s in folds), default=0), "folds_run": len(folds),
            "epochs_trained": sum(s.epochs_run for s in folds)}


def _curve(values: Any) -> list[Optional[float]]:
    """A per-epoch curve as JSON (non-finite values as None)."""
    return [_finite(None if v is None else float(v)) for v in values or []]


def _holdout(trial: optuna.Trial, cfg: Config, searched: list[str], multi: bool = False) -> float:
    from lit_regularize.run import run

    t0 = time.perf_counter()
    cb = PruningCallback(trial, report=not multi)
    # no last.ckpt: an interrupted trial is re-run from scratch (never resumed), so it would only cost writes
    s = run(cfg, extra_callbacks=[cb], evaluate_test=False, hparam_keys=searched, save_last=False)
    # absolute: a worker's working directory is not the report's; the report shows it relative to itself
    _record(trial, {"run_dir": str(Path(s.run_dir).resolve()), "best_epoch": s.best_epoch,
                    "val_acc": _finite(s.best_val_acc), "epochs_run": s.epochs_run,
                    "seconds": time.perf_counter() - t0, "stop_reason": s.stop_reason,
                    "val_curve": _curve(s.history.get("val_loss")),
                    "train_curve": _curve(s.history.get("train_loss"))})
    if cb.pruned_at is not None:
        s.stop_reason = "pruned"
        s.write()
        trial.set_user_attr("stop_reason", "pruned")
        raise optuna.TrialPruned(f"pruned at epoch {cb.pruned_at}")
    if _finite(s.best_val_loss) is None:
        raise optuna.TrialPruned("val/loss was never finite (the run diverged)")
    return float(s.best_val_loss)  # type: ignore[arg-type]


def _kfold(trial: optuna.Trial, cfg: Config, searched: list[str], multi: bool = False) -> float:
    from lit_regularize.kfold import evaluate_folds, fold_configs
    from lit_regularize.run import run

    t0 = time.perf_counter()
    configs = fold_configs(cfg, cfg.run_name)
    done: list[RunSummary] = []

    def run_fold(c: Config) -> RunSummary:
        i = len(done)
        cb = PruningCallback(trial, i * cfg.max_epochs, last_run=i == len(configs) - 1, report=not multi)
        s = run(c, extra_callbacks=[cb], evaluate_test=False, hparam_keys=searched, save_last=False)
        done.append(s)
        if cb.pruned_at is not None:
            s.stop_reason = "pruned"
            s.write()
            raise _Pruned(s, i * cfg.max_epochs + cb.pruned_at)
        return s

    base = {"run_dir": str((Path(cfg.logdir) / cfg.run_name).resolve()), "fold_dirs": [], "val_acc": None,
            "best_epoch": None, "val_curve": []}
    try:
        result = evaluate_folds(configs, run_fold=run_fold)
    except _Pruned as p:
        _record(trial, {**base, "fold_dirs": [str(Path(s.run_dir).resolve()) for s in done], **_fold_epochs(done),
                        "seconds": time.perf_counter() - t0, "stop_reason": "pruned"})
        raise optuna.TrialPruned(str(p)) from None
    except UserError as e:  # the mean curve never finite (diverged)
        _record(trial, {**base, **_fold_epochs(done), "seconds": time.perf_counter() - t0,
                        "stop_reason": "non_finite_loss"})
        raise optuna.TrialPruned(str(e)) from None
    e = result.chosen_epoch
    _record(trial, {"run_dir": base["run_dir"], "fold_dirs": [str(Path(s.run_dir).resolve()) for s in result.folds],
                    "best_epoch": e, "val_acc": _finite(result.curves["val_acc"][e - 1]),
                    **_fold_epochs(result.folds), "seconds": time.perf_counter() - t0,
                    "stop_reason": "chosen_epoch", "fold_val_losses": [s.history["val_loss"][e - 1]
                                                                        for s in result.folds],
                    "val_curve": _curve(result.curves["val_loss"]),
                    "train_curve": _curve(result.curves["train_loss"])})
    return float(result.best_mean_val_loss)


def make_objective(sweep: Sweep) -> Callable[[optuna.Trial], Any]:
    """The objective: best val/loss of the trial (k-fold: of the mean curve); non-finite runs are pruned.
    Multi-objective: (best val/loss, parameter count)."""
    space = parse_space(sweep.space)
    searched = [p.name for p in space if p.searched]

    def train(trial: optuna.Trial, cfg: Config) -> Any:
        value = (_kfold if cfg.kfold >= 2 else _holdout)(trial, cfg, searched, sweep.multi)
        if not sweep.multi:
            return value
        return value, int(trial.user_attrs["n_params"])  # recorded by PruningCallback when the fit started

    def objective(trial: optuna.Trial) -> float:
        try:  # a Ctrl-C anywhere in the trial, also while it records its worker and params, queues it again
            IN_TRIAL.set()
            if STOP.is_set():  # Ctrl-C between trials: this one never starts
                raise KeyboardInterrupt
            trial.set_user_attr("worker", worker_id())
            params = suggest(trial, space)
            cfg = trial_config(sweep, params, trial.number)
            trial.set_user_attr("config", cfg.to_dict())
            trial.set_user_attr("seed", cfg.seed)
            if STOP.is_set():
                raise KeyboardInterrupt
            return train(trial, cfg)
        except (RunInterrupted, KeyboardInterrupt, SystemExit) as e:
            # Ctrl-C / SIGTERM: queue the same params again so the next invocation re-runs this trial first
            # (once: another process may have found this trial stale and queued it already).
            if not already_requeued(trial.study, trial.number):
                trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            if isinstance(e, SystemExit):  # Lightning's sys.exit(1) on Ctrl-C: Optuna marks the trial failed
                raise KeyboardInterrupt from None
            raise
        finally:
            IN_TRIAL.clear()
    return objective


__all__ = ["STOP", "IN_TRIAL", "TRIAL_DEFAULTS", "PruningCallback", "trial_config", "make_objective", "machine_id",
           "worker_id"]
