"""IMDB epochs: lit_regularize's fit (sparse and dense first layer) beside the peer loops of peers_imdb.py.

Seconds per epoch (the peers: train + validation; lit_regularize: wall time from one epoch's start to the next, so
also its checkpoint writes and logging; holdout 15,000 / 9,996, batch 512), the ratio of each variant's minimum to
keras' model.fit and to the lean sparse torch loop at the same hidden size, and the peak RSS of a full IMDB fit.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from lit_regularize.bench.common import Progress, require, spread
from lit_regularize.config import make_config
from lit_regularize.errors import UserError

DEFAULT_PEERS = Path("..") / "shared" / "bench" / "peers_imdb.py"
# The peers' holdout: the first 15,000 shuffled reviews train, the rest (9,996 here) validate.
BENCH_SPLIT = {"val_size": 9996, "batch_size": 512, "optimizer": "rmsprop", "lr": 1e-3}
LIT_VARIANTS = {"lit_sparse": "sparse", "lit_dense": "dense"}
RSS_FIT_ARGS: list[str] = []  # extra fit flags for the RSS probe (the full IMDB needs none)
COLUMNS = [("variant", "variant", ""), ("hidden", "hidden", ""), ("min_epoch_s", "min s/epoch", "{:.3f}"),
           ("median_epoch_s", "median s/epoch", "{:.3f}"), ("vs_keras_fit", "× keras (min)", "{:.2f}"),
           ("vs_keras_fit_median", "× keras (median)", "{:.2f}"), ("vs_lean_sparse", "× lean sparse (min)", "{:.2f}"),
           ("vs_lean_sparse_median", "× lean sparse (median)", "{:.2f}"), ("val_loss", "last val loss", "{:.3f}")]


def load_peers(path: str | os.PathLike) -> ModuleType:
    """Import peers_imdb.py from its path (it is not a package)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--peers: no such file {path}")
    spec = importlib.util.spec_from_file_location("peers_imdb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def check(data_dir: str, peers: ModuleType, variants: Sequence[str]) -> list[str]:
    """The variants to time (all when none are named); unknown names and a missing imdb.npz are user errors."""
    known = list(LIT_VARIANTS) + list(peers.VARIANTS)
    for v in variants:
        if v not in known:
            raise UserError(f"unknown IMDB variant {v!r} (choose from {', '.join(known)})")
    require(data_dir, "imdb.npz")
    return list(variants) or known


def lit_epoch_times(data_dir: str, hidden: int, epochs: int, input_format: str, logdir: str) -> tuple[list[float],
                                                                                                    float]:
    """Per-epoch wall seconds (train, validation, checkpoints, logging) of run() as users run it, and its last
    val loss."""
    from lit_regularize.bench.clock import timed_run

    cfg = make_config({**BENCH_SPLIT, "data_dir": data_dir, "hidden": hidden, "max_epochs": epochs,
                       "early_stopping": False, "input_format": input_format, "logdir": logdir,
                       "name": f"bench_{input_format}_{hidden}", "progress": False, "accelerator": "cpu"})
    times, summary = timed_run(cfg)
    return times, summary.history["val_loss"][-1]


def peak_rss_of_fit(data_dir: str, logdir: str, extra: Sequence[str] = ()) -> float:
    """Peak resident memory (MB) of `lit-regularize fit` on the full IMDB (train + val + test), in a fresh process."""
    cmd = [sys.executable, "-m", "lit_regularize", "fit", "--data-dir", data_dir, "--max-epochs", "2",
           "--logdir", logdir, "--no-progress", "--accelerator", "cpu", *RSS_FIT_ARGS, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, whatever other children used before
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return usage.ru_maxrss / 1024.0


def time_all(data_dir: str, peers: ModuleType, variants: Sequence[str], hiddens: Sequence[int], epochs: int,
             progress: Progress = print) -> list[dict[str, Any]]:
    """One row per (hidden, variant): epoch times, min/median epoch seconds, last val loss, ratios."""
    import torch

    seqs, y = peers.load(str(Path(data_dir) / "imdb.npz"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="lit_bench_") as logdir:
        if any(v in LIT_VARIANTS for v in variants):
            # One untimed epoch first: one-time costs (Lightning, TensorBoard and sparse-kernel start-up) are
            # paid once per process, as in a sweep, and would otherwise land on whichever variant runs first.
            lit_epoch_times(data_dir, min(hiddens), 1, "sparse", logdir)
        for hidden in hiddens:
            for name in variants:
                progress(f"  imdb: timing {name} h={hidden} ({epochs} epochs) ...")
                torch.manual_seed(0)
                if name in LIT_VARIANTS:
                    times, vloss = lit_epoch_times(data_dir, hidden, epochs, LIT_VARIANTS[name], logdir)
                else:
                    times, vloss = peers.VARIANTS[name](seqs, y, hidden, epochs)
                rows.append({"variant": name, "hidden": hidden, **spread(times, "epoch_s"), "val_loss": float(vloss)})
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Ratios of each row's min (the peers' convention) and median epoch time to keras_fit's and lean_sparse's
    at the same hidden size."""
    for row in rows:
        for ref in ("keras_fit", "lean_sparse"):
            base = next((r for r in rows if r["variant"] == ref and r["hidden"] == row["hidden"]), None)
            row[f"vs_{ref}"] = row["min_epoch_s"] / base["min_epoch_s"] if base else None
            row[f"vs_{ref}_median"] = row["median_epoch_s"] / base["median_epoch_s"] if base else None


def bench(data_dir: str, peers_path: str, variants: Sequence[str], hiddens: Sequence[int], epochs: int,
          rss: bool = True, progress: Progress = print) -> dict[str, Any]:
    """The IMDB section: {'rows': [...], 'peak_rss_mb': MB or None}."""
    peers = load_peers(peers_path)
    variants = check(data_dir, peers, variants)
    peak = None
    if rss:
        progress("  imdb: measuring peak RSS of lit-regularize fit on the full IMDB ...")
        with tempfile.TemporaryDirectory(prefix="lit_rss_") as d:
            peak = peak_rss_of_fit(data_dir, d)
    return {"rows": time_all(data_dir, peers, variants, hiddens, epochs, progress), "peak_rss_mb": peak}


__all__ = ["bench", "check", "load_peers", "lit_epoch_times", "peak_rss_of_fit", "time_all", "add_ratios",
           "COLUMNS", "DEFAULT_PEERS", "BENCH_SPLIT", "LIT_VARIANTS"]
