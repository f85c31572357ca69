"""Where a study lives (storage URLs, opening RDB / journal storages with heartbeats) and how it samples and
prunes (seeded samplers; pruners whose warm-up scales with the epoch budget and that never prune a final epoch).
"""
from __future__ import annotations

import copy
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback  # RetryFailedTrialCallback's current name
from optuna.trial import FrozenTrial, TrialState

from lit_regularize.errors import ConfigError

STUDY_DIR = Path("optuna")  # default SQLite files: optuna/<study>.db (relative to the working directory)
SQLITE_TIMEOUT_S = 60  # a writer waits this long for the lock instead of failing with "database is locked"
GRACE_FACTOR = 3  # a trial is stale after GRACE_FACTOR missed heartbeats
MAX_RETRY = 2
OPEN_ATTEMPTS = 3  # a fresh database: concurrent schema creation fails all but one process once
SAMPLERS = ("tpe", "random", "gp", "qmc")
PRUNERS = ("median", "hyperband", "halving", "none")
N_STARTUP_TRIALS = 5  # the first finished trials are never pruned: the pruner needs something to compare with


# -- storage ---------------------------------------------------------------------------------------------------

def storage_url(arg: Optional[str], study_name: str) -> str:
    """--storage as a URL. Default: SQLite file optuna/<study>.db; a bare path is SQLite, *.log or
    journal:PATH an Optuna journal file."""
    if not arg:
        return f"sqlite:///{(STUDY_DIR / f'{study_name}.db').resolve()}"
    if arg.startswith("journal:"):
        return "journal:" + str(Path(arg[len("journal:"):]).expanduser().resolve())
    if "://" in arg:
        return arg
    path = Path(arg).expanduser().resolve()
    return ("journal:" if path.suffix == ".log" else "sqlite:///") + str(path)


def local_file(url: str) -> Optional[Path]:
    """The file of a SQLite or journal URL (None for a server)."""
    if url.startswith("journal:"):
        return Path(url[len("journal:"):])
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def shown_url(url: str) -> str:
    """The URL with any password masked (for printing)."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def _with_driver(url: str) -> str:
    """postgresql://... with the installed driver (SQLAlchemy 2.1 defaults to psycopg 3; we ship psycopg2)."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    try:
        import psycopg  # noqa: F401
        return f"postgresql+psycopg://{rest}"
    except ImportError:
        return f"postgresql+psycopg2://{rest}"


def already_requeued(study: optuna.Study, number: int) -> bool:
    """Whether a retry of trial `number` was queued already (by its own worker on Ctrl-C, or by another process
    that found the trial's worker dead or its heartbeat stale)."""
    return any(t.user_attrs.get("retry_of") == number for t in study.get_trials(deepcopy=False))


class RetryTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial (same params, WAITING), without the dead worker's id on the copy, marked
    `retry_of` like the retry a worker queues on Ctrl-C, and at most one per failed trial.

    Both matter when a Ctrl-C'd worker is slow to exit and gets killed, or its heartbeat goes stale: its trial is
    then reaped here as well, after (or before) the worker queued its own retry."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if already_requeued(study, trial.number):
            return
        trial = copy.deepcopy(trial)
        trial.user_attrs = {**{k: v for k, v in trial.user_attrs.items() if k != "worker"},
                            "retry_of": trial.number}
        super().__call__(study, trial)


def open_storage(url: str, heartbeat: int = 10) -> optuna.storages.BaseStorage:
    """RDB storage with heartbeats + retry of stale trials (SQLite: a long lock wait), or a journal file."""
    if url.startswith("journal:"):
        # JournalStorage has no heartbeats: dead local workers are reaped by workers.reap_dead_workers.
        from optuna.storages.journal import JournalFileBackend

        Path(url[len("journal:"):]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    url = _with_driver(url)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        # A worker may sit in one trial longer than the server keeps an idle connection.
        engine_kwargs = {"pool_pre_ping": True}
    beat = {"heartbeat_interval": heartbeat, "grace_period": GRACE_FACTOR * heartbeat,
            "heartbeat_stale_trial_callback": RetryTrial(max_retry=MAX_RETRY)} if heartbeat else {}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
        except ImportError as e:
            raise ConfigError(f"--storage {shown_url(url)}: database driver missing ({e}); for PostgreSQL "
                              "pip install '.[postgres]'") from None
        except Exception as e:  # sqlalchemy's errors (bad URL, server down, auth) are user errors here
            if attempt + 1 < OPEN_ATTEMPTS:
                # Several processes creating a fresh database's tables at once: all but one fail the commit.
                time.sleep(0.5 * (attempt + 1))
                continue
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--storage {shown_url(url)}: cannot open ({first})") from None
    raise AssertionError("unreachable")


def fail_and_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Fail a RUNNING trial whose local worker process is dead and queue its retry; False if another process
    finished it first.

    Private API on purpose: Optuna's public fail_stale_trials waits for a heartbeat grace period and the journal
    storage has no heartbeats at all, while a dead local worker is known dead at once."""
    storage = study._storage  # noqa: SLF001 (see docstring)
    try:
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):  # noqa: SLF001
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    RetryTrial(max_retry=MAX_RETRY)(study, storage.get_trial(trial._trial_id))  # noqa: SLF001
    return True


# -- samplers ----------------------------------------------------------------------------------------------------

def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded sampler by name (TPE with constant liar so parallel workers do not propose the same point)."""
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed),
    }
    if name not in samplers:
        raise ConfigError(f"--sampler: unknown {name!r} (choose from {', '.join(samplers)})")
    try:
        if name in ("gp", "qmc"):  # their scipy (and torch) imports are lazy: fail now, not inside a trial
            import scipy  # noqa: F401
        return samplers[name]()
    except ImportError as e:
        raise ConfigError(f"--sampler {name} needs an extra package ({e}); pip install scipy") from None


# -- pruners -----------------------------------------------------------------------------------------------------

def warmup_epochs(max_epochs: int) -> int:
    """Epochs a trial always runs before it can be pruned: a quarter of the budget, at least 1, below the last."""
    return max(1, min(max_epochs - 1, math.ceil(max_epochs / 4)))


class BudgetPruner(optuna.pruners.BasePruner):
    """Wraps a pruner: never prunes at the final step (nothing left to save) nor before n_startup_trials
    trials have finished; otherwise asks the wrapped pruner."""

    def __init__(self, inner: optuna.pruners.BasePruner, final_step: int,
                 n_startup_trials: int = N_STARTUP_TRIALS) -> None:
        self.inner, self.final_step, self.n_startup_trials = inner, final_step, n_startup_trials

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step >= self.final_step:
            return False
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(finished) < self.n_startup_trials:
            return False
        return self.inner.prune(study, trial)


def make_pruner(name: str, max_epochs: int, n_folds: int = 1,
                n_startup_trials: int = N_STARTUP_TRIALS) -> optuna.pruners.BasePruner:
    """The pruner of --pruner, its warm-up scaled to the epoch budget; steps run 1 .. n_folds*max_epochs
    (step = fold*max_epochs + 1-based epoch), so a trial is never pruned before `warmup_epochs` epochs."""
    if name not in PRUNERS:
        raise ConfigError(f"--pruner: unknown {name!r} (choose from {', '.join(PRUNERS)})")
    steps = max_epochs * n_folds
    warm = warmup_epochs(max_epochs)
    inner: optuna.pruners.BasePruner
    if name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=warm)
    elif name == "hyperband":
        inner = optuna.pruners.HyperbandPruner(min_resource=warm, max_resource=steps, reduction_factor=3)
    elif name == "halving":
        inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=warm, reduction_factor=3)
    else:
        return optuna.pruners.NopPruner()
    return BudgetPruner(inner, final_step=steps, n_startup_trials=n_startup_trials)


__all__ = ["storage_url", "local_file", "shown_url", "open_storage", "fail_and_retry", "RetryTrial", "already_requeued",
           "make_sampler", "make_pruner", "BudgetPruner", "warmup_epochs", "SAMPLERS", "PRUNERS", "STUDY_DIR",
           "GRACE_FACTOR", "N_STARTUP_TRIALS"]
