"""Populations: the same study with members trained together (the default) and one at a time (--no-population).

Three workloads on real IMDB at hidden 16, each run as users run it, in a fresh process: `compare imdb_penalty
--seeds S` (wall time of the command), `fit --kfold K` (wall time of the command) and a sweep whose space keeps the
architecture fixed (trials/hour over the study's own wall time, as the sweep section measures it). Each row pair
gives the speed-up: one-at-a-time wall / population wall (sweeps: population trials/h / one-at-a-time trials/h).
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from lit_regularize.bench.common import Progress, require
from lit_regularize.bench.sweep import study_stats

COLUMNS = [("workload", "workload", ""), ("mode", "mode", ""), ("min_wall_s", "min wall s", "{:.1f}"),
           ("median_wall_s", "median wall s", "{:.1f}"), ("trials_per_hour", "trials/h", "{:.0f}"),
           ("speedup", "speed-up", "{:.2f}x")]
# The sweep's space: learning rate and L2 strength; hidden, layers and batch size fixed, so trials can share.
SPACE = "lr: {type: float, low: 0.0003, high: 0.01, log: true}\nl2: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}\n"
COMMON = ["--hidden", "16", "--accelerator", "cpu", "--no-progress"]


def check(data_dir: str) -> None:
    """imdb.npz must exist before anything runs."""
    require(data_dir, "imdb.npz")


def _timed(cmd: Sequence[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stdout[-3000:]}")
    return time.perf_counter() - t0


def _pair(name: str, together: list[dict[str, Any]], alone: list[dict[str, Any]], rate: bool) -> list[dict]:
    rows = []
    for mode, runs in (("population", together), ("one at a time", alone)):
        walls = [r["wall_s"] for r in runs]
        row = {"workload": name, "mode": mode, "wall_s": walls, "min_wall_s": min(walls),
               "median_wall_s": statistics.median(walls), "runs": runs}
        if rate:
            row["trials_per_hour"] = statistics.median(r["n_trials"] / r["wall_s"] * 3600 for r in runs)
        rows.append(row)
    if rate:
        rows[0]["speedup"] = rows[0]["trials_per_hour"] / rows[1]["trials_per_hour"]
    else:
        rows[0]["speedup"] = rows[1]["median_wall_s"] / rows[0]["median_wall_s"]
    return rows


def bench(data_dir: str, seeds: int = 3, epochs: int = 20, kfold: int = 5, n_trials: int = 24, size: int = 4,
          sweep_epochs: int = 8, repeats: int = 1, progress: Progress = print) -> dict[str, Any]:
    """The population section: compare, k-fold and sweep, each together and one at a time ({'rows': [...]})."""
    check(data_dir)
    py = [sys.executable, "-m", "lit_regularize"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lit_bench_population_") as d:
        work = Path(d)
        (work / "space.yaml").write_text(SPACE)
        runs: dict[str, list] = {}
        for i in range(repeats):
            for flag, mode in (([], "population"), (["--no-population"], "one at a time")):
                progress(f"  population: compare imdb_penalty --seeds {seeds} --max-epochs {epochs}, {mode} "
                         f"(run {i + 1}/{repeats}) ...")
                out = work / f"compare_{mode[0]}{i}"
                wall = _timed([*py, "compare", "imdb_penalty", "--data-dir", data_dir, "--seeds", str(seeds),
                               "--max-epochs", str(epochs), "--out", str(out), *COMMON, *flag])
                runs.setdefault(f"compare {mode}", []).append({"wall_s": wall})
                progress(f"    {wall:.1f} s")
        rows += _pair(f"compare imdb_penalty --seeds {seeds}", runs["compare population"],
                      runs["compare one at a time"], rate=False)
        runs = {}
        for i in range(repeats):
            for flag, mode in (([], "population"), (["--no-population"], "one at a time")):
                progress(f"  population: fit --kfold {kfold}, {mode} (run {i + 1}/{repeats}) ...")
                wall = _timed([*py, "fit", "--data-dir", data_dir, "--kfold", str(kfold), "--logdir",
                               str(work / f"kfold_{mode[0]}{i}"), *COMMON, *flag])
                runs.setdefault(mode, []).append({"wall_s": wall})
                progress(f"    {wall:.1f} s")
        rows += _pair(f"fit --kfold {kfold}", runs["population"], runs["one at a time"], rate=False)
        runs = {}
        for i in range(repeats):
            for k, mode in ((size, "population"), (1, "one at a time")):
                progress(f"  population: sweep --n-trials {n_trials} --population {k} (run {i + 1}/{repeats}) ...")
                name = f"pop{k}_r{i}"
                storage = f"sqlite:///{(work / f'{name}.db').resolve()}"
                _timed([*py, "sweep", "--data-dir", data_dir, "--space", str(work / "space.yaml"), "--n-trials",
                        str(n_trials), "--max-epochs", str(sweep_epochs), "--population", str(k), "--study-name",
                        name, "--storage", storage, "--logdir", str(work / "sweep_logs"), *COMMON])
                stats = study_stats(storage, name)
                runs.setdefault(mode, []).append(stats)
                progress(f"    {stats['wall_s']:.1f} s study wall, {stats['n_trials']} trials")
        rows += _pair(f"sweep {n_trials} trials x {sweep_epochs} epochs (population {size})", runs["population"],
                      runs["one at a time"], rate=True)
    return {"rows": rows}


__all__ = ["bench", "check", "COLUMNS", "SPACE"]
