"""Optuna studies over run(): YAML search space, pruning, resumable storage, worker processes, report, refit.

Every trial is one `run()` (k-fold: one per fold), so trials log, checkpoint and summarize like fit.py runs.
Several machines join a study by pointing --storage at one database: that is Optuna's own distributed mode.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import optuna
import pytorch_lightning as pl
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from lit_regularize.config import Config, check_keys, load_yaml, make_config
from lit_regularize.errors import ConfigError
from lit_regularize.files import atomic_write, write_json

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class _NoInterruptTraceback(logging.Filter):
    """Ctrl-C is no bug: Optuna's 'trial failed' warning for it needs no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and type(record.exc_info[1]).__name__ in ("KeyboardInterrupt", "RunInterrupted"):
            record.exc_info = None
        return True


logging.getLogger("optuna.study._optimize").addFilter(_NoInterruptTraceback())

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = ROOT / "configs" / "search_space.yaml"
STUDY_DIR = Path("optuna")  # default SQLite files: optuna/<study>.db (relative to the working directory)
# --n-trials counts finished trials; failed ones do not count because they are retried
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
SQLITE_TIMEOUT_S = 60  # a writer waits this long for the lock instead of failing with "database is locked"
GRACE_FACTOR = 3  # a trial is stale after GRACE_FACTOR missed heartbeats
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# -- search space ------------------------------------------------------------------------------------------

class Param(NamedTuple):
    """One searched (or fixed) Config field."""

    name: str
    kind: str  # int | float | categorical | fixed
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()
    value: Any = None
    when: tuple = ()  # ((earlier categorical, allowed values), ...)

    def active(self, chosen: Mapping[str, Any]) -> bool:
        """Whether this parameter applies given the values chosen so far."""
        return all(chosen.get(name) in values for name, values in self.when)


SUGGEST: dict[str, Callable[[optuna.Trial, Param], Any]] = {
    "int": lambda t, p: t.suggest_int(p.name, p.low, p.high, log=p.log),
    "float": lambda t, p: t.suggest_float(p.name, p.low, p.high, log=p.log),
    "categorical": lambda t, p: t.suggest_categorical(p.name, list(p.choices)),
    "fixed": lambda t, p: p.value,
}


def load_space(path: str | os.PathLike) -> dict[str, Any]:
    """The raw search-space mapping of a YAML file (validated by parse_space)."""
    raw = load_yaml(path, "--space")
    parse_space(raw, f"--space {path}")
    return raw


def parse_space(raw: Mapping[str, Any], source: str = "--space") -> list[Param]:
    """Params in file order; conditions may only refer to earlier categorical params and their choices."""
    check_keys(raw, source)
    params: dict[str, Param] = {}
    for name, spec in raw.items():
        def bad(msg: str) -> None:
            raise ConfigError(f"{source}: {name}: {msg}")
        if not isinstance(spec, dict):
            params[name] = Param(name, "fixed", value=spec)
            continue
        unknown = set(spec) - {"type", "low", "high", "log", "choices", "when"}
        if unknown:
            bad(f"unknown key(s) {', '.join(sorted(unknown))}")
        kind = spec.get("type")
        if kind not in ("int", "float", "categorical"):
            bad(f"type must be int, float or categorical, got {kind!r}")
        when = []
        for other, values in (spec.get("when") or {}).items():
            values = values if isinstance(values, list) else [values]
            if other not in params or params[other].kind != "categorical":
                bad(f"when: {other!r} must be a categorical parameter listed above it")
            if not set(values) <= set(params[other].choices):
                bad(f"when: {values} are not all choices of {other!r}")
            when.append((other, tuple(values)))
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                bad("categorical needs a non-empty list of choices")
            params[name] = Param(name, kind, choices=tuple(choices), when=tuple(when))
            continue
        low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
        number = int if kind == "int" else (int, float)
        if not (isinstance(low, number) and isinstance(high, number)) or isinstance(low, bool) or low >= high:
            what = "integers" if kind == "int" else "numbers"
            bad(f"needs numeric low < high ({what}), got {low!r}, {high!r}")
        if log and low <= 0:
            bad(f"log scale needs low > 0, got {low}")
        params[name] = Param(name, kind, float(low) if kind == "float" else low,
                             float(high) if kind == "float" else high, log, when=tuple(when))
    return list(params.values())


def check_space(space: Sequence[Param], fixed: Mapping[str, Any], source: str = "--space") -> None:
    """Every bound and choice must make a valid Config together with the fixed settings."""
    for p in space:
        if p.name in fixed:
            raise ConfigError(f"{source}: {p.name} is searched, so it cannot also be fixed by --"
                              f"{p.name.replace('_', '-')} or --config; drop one of them")
        for value in (p.value,) if p.kind == "fixed" else p.choices or (p.low, p.high):
            try:
                make_config({**fixed, p.name: value})
            except ConfigError as e:
                raise ConfigError(f"{source}: {p.name} = {value!r} is not a valid setting ({e})") from None


def suggest(trial: optuna.Trial, space: Sequence[Param]) -> dict[str, Any]:
    """Config overrides for one trial; inactive conditional params are left to the presets."""
    chosen: dict[str, Any] = {}
    for p in space:
        if p.active(chosen):
            chosen[p.name] = SUGGEST[p.kind](trial, p)
    return chosen


# -- storage and study ------------------------------------------------------------------------------------

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


def open_storage(url: str, heartbeat: int = 10) -> optuna.storages.BaseStorage:
    """RDB storage with heartbeats + retry of stale trials (SQLite: a long lock wait), or a journal file."""
    if url.startswith("journal:"):
        # JournalStorage has no heartbeats in Optuna 5.0: dead local workers are reaped by reap_dead_workers.
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
            "heartbeat_stale_trial_callback": RetryTrial(max_retry=2)} if heartbeat else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
    except ImportError as e:
        raise ConfigError(f"--storage {shown_url(url)}: database driver missing ({e}); for PostgreSQL "
                          "pip install '.[postgres]'") from None
    except Exception as e:  # sqlalchemy's errors (bad URL, server down, auth) are user errors here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage {shown_url(url)}: cannot open ({first})") from None


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
        sampler = samplers[name]()
        if name in ("gp", "qmc"):  # their scipy import is lazy: fail now, not inside the first trial
            import scipy  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"--sampler {name} needs an extra package ({e}); pip install scipy") from None
    return sampler


PRUNERS: dict[str, Callable[[int], optuna.pruners.BasePruner]] = {
    # max_steps = reported steps of a full trial (epochs x folds)
    "median": lambda max_steps: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    "hyperband": lambda max_steps: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_steps),
    "halving": lambda max_steps: optuna.pruners.SuccessiveHalvingPruner(),
    "none": lambda max_steps: optuna.pruners.NopPruner(),
}
SAMPLERS = ("tpe", "random", "gp", "qmc")


@dataclasses.dataclass
class Sweep:
    """Everything a worker needs to join a study (JSON-serializable, passed to worker processes)."""

    study_name: str
    storage: str
    fixed: dict[str, Any]  # Config overrides (YAML + flags) shared by every trial
    space: dict[str, Any]  # raw search-space mapping
    n_trials: int = 20
    timeout: Optional[float] = None
    sampler: str = "tpe"
    pruner: str = "median"
    heartbeat: int = 10

    @property
    def heartbeats(self) -> bool:
        """Whether stale trials are detected (RDB storages with --heartbeat > 0; not journal files)."""
        return bool(self.heartbeat) and not self.storage.startswith("journal:")

    @property
    def base(self) -> Config:
        """The fixed settings as a Config (trials add their params on top)."""
        return make_config(self.fixed)

    def max_steps(self) -> int:
        """Steps a full trial reports: epochs, times folds with --kfold."""
        b = self.base
        return b.max_epochs * (b.kfold * b.kfold_repeats if b.kfold >= 2 else 1)

    def open(self, worker: int = 0) -> optuna.Study:
        """Create or load (resume) the study, with a sampler seeded per worker and per restart."""
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner: unknown {self.pruner!r} (choose from {', '.join(PRUNERS)})")
        storage = open_storage(self.storage, self.heartbeat)
        study = optuna.create_study(study_name=self.study_name, storage=storage, direction="minimize",
                                    load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler(),
                                    pruner=PRUNERS[self.pruner](self.max_steps()))
        # Different seeds per worker and per restart: the same seed would re-propose the same first points.
        study.sampler = make_sampler(self.sampler, self.base.seed + 7919 * worker + len(study.trials))
        return study


def counted(study: optuna.Study) -> int:
    """Finished trials that count towards --n-trials (complete + pruned)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet waited for) is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RetryTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial (same params, WAITING), without the dead worker's id on the copy."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != "worker"}
        super().__call__(study, trial)


def reap_dead_workers(study: optuna.Study, *_: Any) -> list[int]:
    """Fail and retry RUNNING trials whose worker process on this host is gone; heartbeats cover other hosts.

    Also an Optuna callback: a surviving worker retries a killed neighbour's trial without waiting for the
    heartbeat grace period."""
    host, storage = machine_id(), study._storage
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if owner != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:  # the same calls as Optuna's fail_stale_trials: only one process wins the update
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        RetryTrial(max_retry=2)(study, storage.get_trial(t._trial_id))
        reaped.append(t.number)
    return reaped


# -- objective ----------------------------------------------------------------------------------------------

class PruningCallback(pl.Callback):
    """Report val/loss to the trial after every validation and stop the fit once the pruner says so.

    Own class: optuna-integration's callback imports lightning.pytorch, whose classes do not mix with
    pytorch_lightning's Trainer. Stopping (not raising) lets run() still test and write summary.json."""

    def __init__(self, trial: optuna.Trial, step_offset: int = 0) -> None:
        self.trial = trial
        self.step_offset = step_offset
        self.pruned_at: Optional[int] = None  # 1-based epoch

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lit_regularize.run import MONITOR

        value = trainer.callback_metrics.get(MONITOR)
        if trainer.sanity_checking or value is None or not math.isfinite(float(value)):
            return  # non-finite: run()'s EarlyStopping(check_finite) ends the fit; evaluate() decides
        self.trial.report(float(value), self.step_offset + trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned_at = trainer.current_epoch + 1
            trainer.should_stop = True


class Evaluation(NamedTuple):
    """Objective value (mean best val/loss over folds; None if never finite), trial attributes, pruning."""

    value: Optional[float]
    attrs: dict[str, Any]
    pruned_at: Optional[int]


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


def evaluate(cfg: Config, trial: Optional[optuna.Trial] = None) -> Evaluation:
    """run() cfg (each fold with --kfold); with a trial, report each epoch at step fold*max_epochs + epoch."""
    from lit_regularize.kfold import fold_configs
    from lit_regularize.run import SUMMARY, run

    configs = fold_configs(cfg) if cfg.kfold >= 2 else [cfg]
    summaries, pruned_at = [], None
    for i, c in enumerate(configs):
        pruning = [PruningCallback(trial, i * cfg.max_epochs)] if trial is not None else []
        s = run(c, extra_callbacks=pruning)
        summaries.append(s)
        if pruning and pruning[0].pruned_at is not None:
            pruned_at = i * cfg.max_epochs + pruning[0].pruned_at - 1  # the step of the last report
            s.update(stop_reason="pruned", pruned_at_epoch=pruning[0].pruned_at)
            write_json(Path(s["log_dir"]) / SUMMARY, s)
            break
    value = _mean([s["best_val_loss"] for s in summaries]) if len(summaries) == len(configs) else None
    epochs = [s["best_epoch"] for s in summaries if s["best_epoch"] is not None]
    attrs: dict[str, Any] = {
        "val_acc": _mean([s["best_val_acc"] for s in summaries]),
        "best_epoch": round(sum(epochs) / len(epochs)) if epochs else None,
        "epochs_run": sum(s["epochs_run"] for s in summaries),
        "test_loss": _mean([s["test"]["best"]["loss"] for s in summaries]),
        "test_acc": _mean([s["test"]["best"]["acc"] for s in summaries]),
        "test_acc_last": _mean([s["test"]["last"]["acc"] for s in summaries]),
        "seed": cfg.seed, "config": cfg.to_dict(), "log_dir": str(Path(cfg.logdir) / cfg.run_name),
        "summary": [str(Path(s["log_dir"]) / SUMMARY) for s in summaries] if len(configs) > 1
        else str(Path(summaries[0]["log_dir"]) / SUMMARY),
        "wall_time": sum(s["wall_time"] for s in summaries),
    }
    if len(configs) > 1:
        attrs["fold_val_losses"] = [s["best_val_loss"] for s in summaries]
    if pruned_at is not None:
        attrs["pruned_at_step"] = pruned_at
    return Evaluation(value, attrs, pruned_at)


def trial_config(sweep: Sweep, params: Mapping[str, Any], number: int) -> Config:
    """The fixed settings + the trial's params, logging to <logdir>/<study>/trial_<n>."""
    return make_config({**sweep.fixed, **params, "name": f"{sweep.study_name}/trial_{number:04d}"},
                       source=f"trial {number}")


def make_objective(sweep: Sweep) -> Callable[[optuna.Trial], float]:
    """The objective: best val/loss of the trial's run(s); non-finite or pruned runs raise TrialPruned."""
    from lit_regularize.run import RunInterrupted

    space = parse_space(sweep.space)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id())
        params = suggest(trial, space)
        try:
            result = evaluate(trial_config(sweep, params, trial.number), trial)
        except (RunInterrupted, KeyboardInterrupt, SystemExit) as e:
            # Ctrl-C: queue the same params again so the next invocation re-runs this trial first.
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            if isinstance(e, SystemExit):  # Lightning's sys.exit(1) on Ctrl-C: Optuna marks the trial failed
                raise KeyboardInterrupt from None
            raise
        for key, value in result.attrs.items():
            trial.set_user_attr(key, value)
        if result.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {result.pruned_at}")
        if result.value is None:
            raise optuna.TrialPruned("val/loss was never finite (the run diverged)")
        return result.value
    return objective


# -- workers ------------------------------------------------------------------------------------------------

class Placement(NamedTuple):
    """Where one worker runs: its CUDA_VISIBLE_DEVICES (None = leave as is) and torch thread count."""

    cuda_visible_devices: Optional[str]
    threads: int


def visible_gpus(arg: Optional[str] = None) -> list[str]:
    """--gpus 0,1 | none; default: every visible GPU (the ids in $CUDA_VISIBLE_DEVICES when set)."""
    if arg is not None:
        if arg.strip().lower() in ("", "none", "cpu"):
            return []
        ids = [g.strip() for g in arg.split(",") if g.strip()]
        if not all(re.fullmatch(r"[0-9]+|[A-Za-z0-9-]+", g) for g in ids):
            raise ConfigError(f"--gpus: expected a comma-separated list of GPU ids such as 0,1, got {arg!r}")
        return ids
    import torch

    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip():  # pin to the ids the user made visible, not to 0..n-1 of all GPUs
        return [g.strip() for g in env.split(",") if g.strip()][:n]
    return [str(i) for i in range(n)]


def placements(n_workers: int, gpus: Sequence[str], n_cpus: int) -> list[Placement]:
    """One GPU per worker (round-robin if there are more workers than GPUs); CPU cores are split evenly."""
    if n_workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {n_workers}")
    threads = max(1, n_cpus // n_workers)
    return [Placement(gpus[i % len(gpus)] if gpus else None, threads) for i in range(n_workers)]


def run_worker(sweep: Sweep, index: int = 0, threads: Optional[int] = None) -> None:
    """Join the study and run trials until it has sweep.n_trials finished ones (or --timeout).

    Like Optuna's MaxTrialsCallback, but checked before each trial and counting the trials other workers are
    running, so parallel workers do not overshoot; a worker with nothing left to start waits for the running
    trials, because a killed neighbour's trial comes back as a retry."""
    import torch

    from lit_regularize.run import quiet_lightning

    if threads:
        torch.set_num_threads(threads)
    quiet_lightning()
    study = sweep.open(index)
    objective = make_objective(sweep)
    deadline = time.monotonic() + sweep.timeout if sweep.timeout else math.inf
    while counted(study) < sweep.n_trials and time.monotonic() < deadline:
        reap_dead_workers(study)
        # Without heartbeats a dead remote worker's trial stays RUNNING for ever: wait for local ones only
        # then (dead local workers have just been reaped).
        here = machine_id() + ":"
        running = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                      if sweep.heartbeats or str(t.user_attrs.get("worker", "")).startswith(here))
        if counted(study) + running < sweep.n_trials:
            study.optimize(objective, n_trials=1)
            continue
        optuna.storages.fail_stale_trials(study)  # a dead remote worker's trial: failed + retried after grace
        time.sleep(1.0)


def _start_worker(sweep: Sweep, index: int, place: Placement) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(place.threads),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    if place.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = place.cuda_visible_devices
    # Own session: a terminal Ctrl-C reaches only the launcher, which forwards exactly one SIGINT per worker.
    cmd = [sys.executable, "-m", "lit_regularize.tuning", json.dumps(dataclasses.asdict(sweep)), str(index),
           str(place.threads)]
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def _stop_workers(procs: Sequence[subprocess.Popen], grace_s: float = 60.0) -> None:
    """SIGINT (trials end as interrupted and are re-queued), then SIGTERM, then SIGKILL; bounded in time."""
    try:
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            alive = [p for p in procs if p.poll() is None]
            for p in alive:
                p.send_signal(sig)
            deadline = time.monotonic() + wait_s
            while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
                time.sleep(0.1)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, kill them now (their trials are reaped)
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait(timeout=10)


def launch(sweep: Sweep, where: Sequence[Placement]) -> list[int]:
    """Run one worker process per placement on the study and wait; exit codes in order.

    A worker killed from outside has its trial failed and queued for retry at once (see reap_dead_workers)."""
    study = sweep.open()
    procs = [_start_worker(sweep, i, p) for i, p in enumerate(where)]
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        running = set(range(len(procs)))
        while running:
            time.sleep(0.2)
            for i in sorted(running):
                rc = procs[i].poll()
                if rc is None:
                    continue
                running.discard(i)
                if rc < 0:
                    print(f"worker {i} (pid {procs[i].pid}) was killed by {signal.Signals(-rc).name}; "
                          "its running trial, if any, is retried", file=sys.stderr)
                reap_dead_workers(study)
    except KeyboardInterrupt:
        print("interrupted: stopping workers ...", file=sys.stderr)
        _stop_workers(procs)
        reap_dead_workers(study)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return [p.returncode for p in procs]


# -- results ------------------------------------------------------------------------------------------------

def _sort_key(t: FrozenTrial) -> tuple:
    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(t.state, 2)
    last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else math.inf
    return rank, t.value if t.value is not None else last, t.number


def leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial, complete ones first by val/loss, then pruned, then failed."""
    params = list(dict.fromkeys(p for t in study.trials for p in t.params))
    rows = []
    for t in sorted(study.trials, key=_sort_key):
        u = t.user_attrs
        row = {"trial": t.number, "state": t.state.name, "val_loss": t.value}
        row.update({p: t.params.get(p) for p in params})
        row.update({k: u.get(k) for k in ("val_acc", "best_epoch", "epochs_run", "test_acc", "test_loss",
                                          "test_acc_last")})
        row["minutes"] = round(t.duration.total_seconds() / 60, 2) if t.duration else None
        row["log_dir"] = u.get("log_dir")
        rows.append(row)
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name."""
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def dashboard_command(url: str) -> str:
    """How to browse the study in optuna-dashboard."""
    target = url[len("journal:"):] if url.startswith("journal:") else url
    return f"pip install optuna-dashboard && optuna-dashboard {shown_url(target)}"


PLOTS = ("plot_optimization_history", "plot_param_importances", "plot_intermediate_values",
         "plot_parallel_coordinate")


def write_report(study: optuna.Study, out: str | os.PathLike, top: int = 10) -> list[Path]:
    """leaderboard.csv/.md and Optuna's plots as PNG (HTML too with plotly installed); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as mpl_vis

    out = Path(out)
    rows = leaderboard(study)
    written = []
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written.append(atomic_write(out / "leaderboard.csv", lambda f: f.write(buf.getvalue().encode())))
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(state_counts(study).items()))
    best = [r for r in rows if r["state"] == "COMPLETE"][:top]
    lines = [f"# Study `{study.study_name}`", "", f"{len(rows)} trials ({counts}); objective: best val/loss "
             "(lower is better).", ""]
    if best:
        cols = [c for c in best[0] if c not in ("state", "log_dir")] + ["log_dir"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in best]
    md = "\n".join(lines) + "\n"
    written.append(atomic_write(out / "leaderboard.md", lambda f: f.write(md.encode())))
    try:
        import plotly  # noqa: F401
        html = True
    except ImportError:
        html = False
    for name in PLOTS:
        try:
            ax = getattr(mpl_vis, name)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            written.append(atomic_write(out / f"{name[5:]}.png", lambda f: f.write(png.getvalue())))
            if html:
                page = getattr(optuna.visualization, name)(study).to_html()
                written.append(atomic_write(out / f"{name[5:]}.html", lambda f: f.write(page.encode())))
        except Exception as e:  # e.g. importances need 2+ complete trials: skip that plot, keep the report
            plt.close("all")
            print(f"report: skipped {name[5:]} ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                  file=sys.stderr)
    return written


def refit_best(study: optuna.Study, all_data: bool = False) -> Evaluation:
    """Retrain the best trial's config with its seed; all_data: on train+val for its best epoch count."""
    best = study.best_trial
    from lit_regularize.kfold import refit_config

    cfg = make_config(best.user_attrs["config"], source=f"trial {best.number}")
    name = f"{study.study_name}/refit_trial_{best.number:04d}"
    if all_data:
        return evaluate(refit_config(cfg, int(best.user_attrs["best_epoch"]), name))
    return evaluate(cfg.replace(name=name))


def _worker_main(argv: Sequence[str]) -> int:
    """Entry of a worker process: python -m lit_regularize.tuning SWEEP_JSON INDEX THREADS."""
    from lit_regularize.errors import UserError
    from lit_regularize.run import RunInterrupted

    sweep = Sweep(**json.loads(argv[0]))
    try:
        run_worker(sweep, int(argv[1]), int(argv[2]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, RunInterrupted):
        return 130
    return 0


__all__ = ["Sweep", "Param", "load_space", "parse_space", "check_space", "suggest", "storage_url",
           "open_storage", "make_sampler", "PRUNERS", "SAMPLERS", "PruningCallback", "evaluate",
           "make_objective", "placements", "visible_gpus", "run_worker", "launch", "reap_dead_workers",
           "counted", "leaderboard", "write_report", "refit_best", "dashboard_command", "state_counts",
           "COUNTED", "DEFAULT_SPACE"]

if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
