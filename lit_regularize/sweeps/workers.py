"""Worker processes on this machine: placements (one GPU each, CPU cores split), launching
`python -m lit_regularize.sweeps.workers`, stopping them, and failing + retrying the trials of dead workers.

A worker dies with the sweep process that started it (Linux parent-death signal, and a watcher thread that
notices a changed parent pid), so a SIGKILLed sweep leaves no orphans; their RUNNING trials are failed and queued
again by the next sweep run (at once for local workers, after the heartbeat grace period for remote ones).
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, NamedTuple, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from lit_regularize.errors import ConfigError, on_sigterm
from lit_regularize.sweeps.objective import IN_TRIAL, STOP, machine_id, make_objective
from lit_regularize.sweeps.storage import fail_and_retry
from lit_regularize.sweeps.study import Sweep, counted

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0


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


def usable_cpus() -> int:
    """Cores this process may run on: its affinity mask (taskset, cgroup cpusets), not os.cpu_count()'s host total,
    which would give each worker more threads than it has cores (oversubscribed threads slow every worker)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def placements(n_workers: int, gpus: Sequence[str], n_cpus: int) -> list[Placement]:
    """One GPU per worker (round-robin if there are more workers than GPUs); CPU cores are split evenly.

    Without GPUs, more workers than cores only slow each other down: capped at the core count, with a warning."""
    if n_workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {n_workers}")
    if not gpus and n_workers > n_cpus:
        warnings.warn(f"--workers {n_workers}: this machine has {n_cpus} CPU core(s) and no GPU; "
                      f"using {n_cpus} worker(s)", stacklevel=2)
        n_workers = n_cpus
    # Spare cores go to the first workers (3 workers on 4 cores: 2, 1, 1) instead of idling; never 0 threads.
    return [Placement(gpus[i % len(gpus)] if gpus else None,
                      max(1, n_cpus // n_workers + (i < n_cpus % n_workers))) for i in range(n_workers)]


# -- dead workers --------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet waited for) is dead too
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _dead_local(t: FrozenTrial, host: str) -> bool:
    owner, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
    return owner == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def reap_dead_workers(study: optuna.Study, *_: Any) -> list[int]:
    """Fail and retry RUNNING trials whose worker process on this machine is gone; heartbeats cover other hosts.

    Also an Optuna callback: a surviving worker retries a killed neighbour's trial without waiting for the
    heartbeat grace period."""
    host = machine_id()
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if _dead_local(t, host) and fail_and_retry(study, t)]


# -- one worker ----------------------------------------------------------------------------------------------

def run_worker(sweep: Sweep, index: int = 0, threads: Optional[int] = None,
               callbacks: Sequence[Any] = ()) -> None:
    """Join the study and run trials until it has sweep.n_trials finished ones (or --timeout).

    Like Optuna's MaxTrialsCallback, but checked before each trial and counting the trials other workers are
    running, so parallel workers do not overshoot; a worker with nothing left to start waits for the running
    trials, because a killed neighbour's trial comes back as a retry."""
    import torch

    from lit_regularize.run import quiet_lightning
    from lit_regularize.sweeps.population import run_trials
    from lit_regularize.sweeps.report import print_trial

    if threads:
        torch.set_num_threads(threads)
    quiet_lightning()
    study = sweep.open(index)
    objective = make_objective(sweep)
    deadline = time.monotonic() + sweep.timeout if sweep.timeout else math.inf
    base = sweep.base
    population = base.population if base.kfold < 2 else 1  # k-fold trials: one at a time (see sweeps/population)
    here = machine_id() + ":"
    while counted(study) < sweep.n_trials and time.monotonic() < deadline and not STOP.is_set():
        reap_dead_workers(study)
        # Without heartbeats a dead remote worker's trial stays RUNNING for ever: wait for local ones only then.
        running = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                      if sweep.heartbeats or str(t.user_attrs.get("worker", "")).startswith(here))
        if counted(study) + running < sweep.n_trials:
            if population > 1:  # --population K: K trials asked at once, trained together where they can
                run_trials(study, sweep, min(population, sweep.n_trials - counted(study) - running),
                           [print_trial, *callbacks])
            else:
                study.optimize(objective, n_trials=1, callbacks=[print_trial, *callbacks])
            continue
        if sweep.heartbeats:
            optuna.storages.fail_stale_trials(study)  # a dead remote worker's trial: failed + retried after grace
        STOP.wait(1.0)
    if STOP.is_set():
        raise KeyboardInterrupt


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the sweep process that started it dies (even by SIGKILL)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) == 0
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    if armed:
        return

    def watch() -> None:  # without prctl (not Linux): notice the re-parenting
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _on_term(signum: int, frame: Any) -> None:
    """The launcher's SIGTERM: like Ctrl-C (stop the workers, reap their trials)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _on_term_worker(signum: int, frame: Any) -> None:
    """A worker's SIGTERM outside run() (inside, run() turns it into an interrupted run): stop at the next safe
    point; raising here could cut a storage transaction short and leave the database locked."""
    STOP.set()


def _on_int_worker(signum: int, frame: Any) -> None:
    """A worker's Ctrl-C (forwarded by the launcher): KeyboardInterrupt inside a trial's body, where the objective
    queues the trial again; elsewhere (Optuna's ask/tell, between trials) stop at the next trial's start."""
    STOP.set()
    if IN_TRIAL.is_set():
        raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry of a worker process: python -m lit_regularize.sweeps.workers SWEEP_JSON INDEX THREADS PARENT_PID."""
    from lit_regularize.errors import RunInterrupted, UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_term_worker)
    signal.signal(signal.SIGINT, _on_int_worker)
    if len(argv) > 3:
        _die_with_parent(int(argv[3]))
    sweep = Sweep(**json.loads(argv[0]))
    try:
        run_worker(sweep, int(argv[1]), int(argv[2]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, RunInterrupted):
        return 130
    return 0


# -- launching -----------------------------------------------------------------------------------------------

def worker_command(sweep: Sweep, index: int, place: Placement) -> list[str]:
    """The worker's command line (the installed package; no PYTHONPATH is set)."""
    return [sys.executable, "-m", "lit_regularize.sweeps.workers", json.dumps(dataclasses.asdict(sweep)),
            str(index), str(place.threads), str(os.getpid())]


def start_worker(sweep: Sweep, index: int, place: Placement) -> subprocess.Popen:
    """One worker process pinned to its GPU (CUDA_VISIBLE_DEVICES) with its share of the cores."""
    env = dict(os.environ, OMP_NUM_THREADS=str(place.threads))
    if place.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = place.cuda_visible_devices
    # Own session: a terminal Ctrl-C reaches only the launcher, which forwards exactly one SIGINT per worker.
    return subprocess.Popen(worker_command(sweep, index, place), env=env, start_new_session=True)


def stop_workers(procs: Sequence[subprocess.Popen], grace_s: float = 60.0) -> None:
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
    procs = [start_worker(sweep, i, p) for i, p in enumerate(where)]
    with on_sigterm(_on_term):
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
            stop_workers(procs)
            reap_dead_workers(study)
            raise
    return [p.returncode for p in procs]


__all__ = ["Placement", "usable_cpus", "visible_gpus", "placements", "reap_dead_workers", "run_worker", "worker_command",
           "start_worker", "stop_workers", "launch", "main"]

if __name__ == "__main__":
    sys.exit(main())
