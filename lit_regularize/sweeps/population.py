"""`sweep --population K`: ask K trials at once (Optuna's ask/tell), train those that share an architecture as one
population (lit_regularize.population), report every member's val/loss each epoch so the pruner still stops members,
and tell each trial its result: the same trial values, user attributes and run folders as one trial at a time.

Holdout trials only: a k-fold trial's folds run one after another (the study's pruner reads them as one curve).
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import optuna
from optuna.trial import TrialState

from lit_regularize.config import Config
from lit_regularize.sweeps.objective import STOP, trial_config, worker_id
from lit_regularize.sweeps.space import parse_space, suggest
from lit_regularize.sweeps.storage import already_requeued
from lit_regularize.sweeps.study import Sweep


def _finite(v: Optional[float]) -> Optional[float]:
    return v if v is not None and math.isfinite(v) else None


def run_trials(study: optuna.Study, sweep: Sweep, k: int, callbacks: Sequence[Callable[..., Any]] = ()) -> None:
    """Ask k trials, train them (as populations where they share an architecture), tell their results; then call
    callbacks(study, frozen_trial) per trial as study.optimize would."""
    from lit_regularize.population import groups, train_population
    from lit_regularize.run import run

    space = parse_space(sweep.space)
    searched = [p.name for p in space if p.searched]
    trials: list[optuna.Trial] = []
    cfgs: list[Config] = []
    told: dict[int, Any] = {}  # trial index -> its FrozenTrial (study.tell's answer)
    try:
        for _ in range(k):
            if STOP.is_set():
                raise KeyboardInterrupt
            with warnings.catch_warnings():
                # Optuna's heartbeat thread lives in Study.optimize only: asked trials carry no heartbeat (a killed
                # population worker's trials are not retried as stale ones); said in docs/populations.md, not on
                # every trial
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = study.ask()
            trials.append(trial)
            trial.set_user_attr("worker", worker_id())
            cfg = trial_config(sweep, suggest(trial, space), trial.number)
            trial.set_user_attr("config", cfg.to_dict())
            trial.set_user_attr("seed", cfg.seed)
            cfgs.append(cfg)
        for group in groups(cfgs, len(cfgs)):
            members = [cfgs[i] for i in group]
            pruned_at: dict[int, int] = {}
            for i in group:
                trials[i].set_user_attr("n_params", None)
            t0 = time.perf_counter()

            def report(j: int, epoch: int, val: Optional[float], ending: bool, group: list[int] = group,
                       pruned_at: dict[int, int] = pruned_at) -> bool:
                if STOP.is_set():
                    raise KeyboardInterrupt
                trial = trials[group[j]]
                if sweep.multi or val is None or not math.isfinite(val):
                    return False
                trial.report(float(val), epoch)
                if ending or not trial.should_prune():
                    return False
                pruned_at[j] = epoch
                return True
            if len(group) > 1:
                summaries = train_population(members, evaluate_test=False, save_last=False, hparam_keys=searched,
                                             on_epoch=report)
            else:  # cannot share: the usual one-at-a-time objective's run, reporting through the same hook
                from lit_regularize.sweeps.objective import PruningCallback

                cb = PruningCallback(trials[group[0]], report=not sweep.multi)
                summaries = [run(members[0], extra_callbacks=[cb], evaluate_test=False, hparam_keys=searched,
                                 save_last=False)]
                if cb.pruned_at is not None:
                    pruned_at[0] = cb.pruned_at
            seconds = time.perf_counter() - t0
            for j, (i, s) in enumerate(zip(group, summaries)):
                told[i] = _tell(study, trials[i], s, pruned_at.get(j), seconds, sweep.multi)
    except (KeyboardInterrupt, SystemExit, Exception) as e:
        interrupted = not isinstance(e, Exception) or type(e).__name__ == "RunInterrupted"
        for i, trial in enumerate(trials):
            if i in told:
                continue
            if interrupted and not already_requeued(study, trial.number):
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            study.tell(trial, state=TrialState.FAIL)
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    for i in range(len(trials)):
        for cb in callbacks:
            cb(study, told[i])


def _tell(study: optuna.Study, trial: optuna.Trial, s: Any, pruned_at: Optional[int], seconds: float,
          multi: bool) -> Any:
    """Record a finished member as its trial (the attributes the one-at-a-time objective records) and tell it."""
    attrs = {"run_dir": str(Path(s.run_dir).resolve()), "best_epoch": s.best_epoch,
             "val_acc": _finite(s.best_val_acc), "epochs_run": s.epochs_run, "seconds": seconds,
             "stop_reason": "pruned" if pruned_at is not None else s.stop_reason, "n_params": s.n_params,
             "val_curve": [_finite(v) for v in s.history.get("val_loss") or []],
             "train_curve": [_finite(v) for v in s.history.get("train_loss") or []],
             "population": (s.population or {}).get("size", 1)}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if pruned_at is not None:
        if s.stop_reason != "pruned":
            s.stop_reason = "pruned"
            s.write()
        return study.tell(trial, state=TrialState.PRUNED)
    value = _finite(s.best_val_loss)
    if value is None:  # the run diverged: pruned, as the one-at-a-time objective does
        return study.tell(trial, state=TrialState.PRUNED)
    return study.tell(trial, (value, int(s.n_params)) if multi else value)


__all__ = ["run_trials"]
