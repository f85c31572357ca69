"""Sweep throughput: `lit-regularize sweep` with 1 and 2 workers beside peers_sweep.py (Optuna's Lightning
example: one process, `study.optimize(n_jobs=J)`), same trials x epochs, space, holdout and batch size.

Both are run as users run them, in fresh processes. Wall time is the study's own: from the first trial's start to
the last trial's end (peers_sweep.py: around `study.optimize`), so process start-up, data loading and the
report written after the study are left out on both sides. Epochs trained is the sum over trials of the epochs
each one actually trained, pruned trials included (pruning is what makes a sweep cheaper per trial).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from lit_regularize.bench.common import Progress, require
from lit_regularize.errors import UserError

DEFAULT_PEERS = Path("..") / "shared" / "bench" / "peers_sweep.py"
# The peers' settings: IMDB holdout 15,000 / 9,996, batch 512, RMSprop, CPU, the shipped search space.
SWEEP_ARGS = ["--val-size", "9996", "--batch-size", "512", "--accelerator", "cpu", "--gpus", "none"]
# Output lines shown as progress: trial lines, results, problems (not Lightning's per-trial start-up chatter).
SHOWN = ("trial ", "study ", "best trial", "{", "warning", "error", "Traceback")
COLUMNS = [("variant", "variant", ""), ("workers", "workers", ""), ("n_trials", "trials", ""),
           ("pruned", "pruned", "{:g}"), ("epochs_trained", "epochs trained", "{:g}"),
           ("min_wall_s", "min wall s", "{:.1f}"), ("median_wall_s", "median wall s", "{:.1f}"),
           ("trials_per_hour", "trials/h", "{:.0f}"), ("epochs_per_hour", "epochs/h", "{:.0f}"),
           ("median_trial_s", "median s/trial", "{:.2f}"), ("best_val_loss", "best val loss", "{:.4f}")]


def check(data_dir: str, peers_path: str) -> None:
    """imdb.npz and peers_sweep.py must exist before anything runs."""
    require(data_dir, "imdb.npz")
    if not Path(peers_path).is_file():
        raise UserError(f"--peers-sweep: no such file {peers_path}")


def _stream(cmd: Sequence[str], progress: Progress, prefix: str) -> list[str]:
    """Run cmd, passing its SHOWN lines to progress as they come; all its lines, or RuntimeError on failure."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.lstrip().startswith(SHOWN):
            progress(f"    {prefix}{line.rstrip()}")
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n" + "\n".join(lines[-20:]))
    return lines


def study_stats(storage: str, study_name: str) -> dict[str, Any]:
    """Trials, pruned, epochs trained, study wall seconds, per-trial seconds and best value of a finished study."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = [t for t in optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
              if t.datetime_complete is not None]
    if not trials:
        raise RuntimeError(f"study {study_name} has no finished trial")
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    done = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return {"n_trials": len(trials), "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "complete": len(done), "wall_s": wall, "best_val_loss": min(done) if done else None,
            "epochs_trained": sum(int(t.user_attrs.get("epochs_trained", t.user_attrs.get(
                "epochs_run", len(t.intermediate_values)))) for t in trials),  # k-fold trials: every fold's
            "trial_s": [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]}


def lit_sweep(data_dir: str, workers: int, n_trials: int, epochs: int, workdir: Path, run: int,
              progress: Progress) -> dict[str, Any]:
    """One `lit-regularize sweep` study in a fresh process, and its stats."""
    name = f"bench_w{workers}_r{run}"
    storage = f"sqlite:///{(workdir / f'{name}.db').resolve()}"
    cmd = [sys.executable, "-m", "lit_regularize", "sweep", "--data-dir", str(data_dir), "--n-trials", str(n_trials),
           "--max-epochs", str(epochs), "--workers", str(workers), "--study-name", name, "--storage", storage,
           "--logdir", str(workdir / "logs"), *SWEEP_ARGS]
    _stream(cmd, progress, f"lit w{workers}: ")
    return study_stats(storage, name)


def peer_sweep(peers_path: str, data_dir: str, jobs: int, n_trials: int, epochs: int,
               progress: Progress) -> dict[str, Any]:
    """One peers_sweep.py study in a fresh process; its --json line, in study_stats' keys."""
    cmd = [sys.executable, str(peers_path), str(Path(data_dir) / "imdb.npz"), "--n-trials", str(n_trials),
           "--epochs", str(epochs), "--jobs", str(jobs), "--json"]
    lines = _stream(cmd, progress, f"peer j{jobs}: ")
    try:
        out = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    except (StopIteration, json.JSONDecodeError):
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON line:\n" + "\n".join(lines[-20:])) from None
    return {"n_trials": out["n_trials"], "pruned": out["pruned"], "complete": out["complete"],
            "wall_s": out["wall_s"], "best_val_loss": out["best_val_loss"], "epochs_trained": out["epochs_trained"],
            "trial_s": None, "peer": out}


def row(variant: str, workers: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the repeated runs of one variant: min/median wall, median rates."""
    walls = [r["wall_s"] for r in runs]
    trial_s = [s for r in runs for s in (r["trial_s"] or [])]
    return {"variant": variant, "workers": workers, "runs": runs, "wall_s": walls,
            "min_wall_s": min(walls), "median_wall_s": statistics.median(walls),
            "n_trials": runs[0]["n_trials"], "pruned": statistics.median(r["pruned"] for r in runs),
            "epochs_trained": statistics.median(r["epochs_trained"] for r in runs),
            "trials_per_hour": statistics.median(r["n_trials"] / r["wall_s"] * 3600 for r in runs),
            "epochs_per_hour": statistics.median(r["epochs_trained"] / r["wall_s"] * 3600 for r in runs),
            "min_trial_s": min(trial_s) if trial_s else None,
            "median_trial_s": statistics.median(trial_s) if trial_s else None,
            "best_val_loss": min((r["best_val_loss"] for r in runs if r["best_val_loss"] is not None), default=None)}


def bench(data_dir: str, peers_path: str, workers: Sequence[int] = (1, 2), n_trials: int = 24, epochs: int = 8,
          repeats: int = 1, progress: Progress = print) -> dict[str, Any]:
    """The sweep section: a lit_sweep and an optuna_example row per worker count ({'rows': [...]})."""
    check(data_dir, peers_path)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lit_bench_sweep_") as d:
        for w in workers:
            runs = []
            for i in range(repeats):
                progress(f"  sweep: lit-regularize sweep, {w} worker(s), {n_trials} trials x {epochs} epochs "
                         f"(run {i + 1}/{repeats}) ...")
                runs.append(lit_sweep(data_dir, w, n_trials, epochs, Path(d), i, progress))
            rows.append(row("lit_sweep", w, runs))
            runs = []
            for i in range(repeats):
                progress(f"  sweep: peers_sweep.py --jobs {w}, {n_trials} trials x {epochs} epochs "
                         f"(run {i + 1}/{repeats}) ...")
                runs.append(peer_sweep(peers_path, data_dir, w, n_trials, epochs, progress))
            rows.append(row("optuna_example", w, runs))
    return {"rows": rows}


__all__ = ["bench", "check", "lit_sweep", "peer_sweep", "study_stats", "row", "COLUMNS", "DEFAULT_PEERS",
           "SWEEP_ARGS"]
