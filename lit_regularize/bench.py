"""Side-by-side epoch timing of lit_regularize's fit against the peer loops in shared/bench/peers_imdb.py."""
from __future__ import annotations

import importlib.util
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import torch

from lit_regularize.config import make_config
from lit_regularize.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# The peers' holdout: the first 15,000 shuffled reviews train, the rest (9,996 here) validate.
BENCH_SPLIT = {"val_size": 9996, "batch_size": 512, "optimizer": "rmsprop", "lr": 1e-3}
LIT_VARIANTS = {"lit_sparse": "sparse", "lit_dense": "dense"}
RSS_FIT_ARGS: list[str] = []  # extra fit.py flags for the RSS probe (the full IMDB needs none)


def load_peers(path: str | os.PathLike) -> ModuleType:
    """Import peers_imdb.py from its path (it is not a package)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--peers: no such file {path}")
    spec = importlib.util.spec_from_file_location("peers_imdb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def lit_epoch_times(data_dir: str, hidden: int, epochs: int, input_format: str, logdir: str) -> tuple[list[float],
                                                                                                    float]:
    """Per-epoch seconds (train + validation) of run() as users run it, and its last val loss."""
    from lit_regularize.run import run

    cfg = make_config({**BENCH_SPLIT, "data_dir": data_dir, "hidden": hidden, "max_epochs": epochs,
                       "early_stopping": False, "input_format": input_format, "logdir": logdir,
                       "name": f"bench_{input_format}_{hidden}", "progress": False, "accelerator": "cpu"})
    summary = run(cfg)
    return summary["history"]["epoch_time"], summary["history"]["val_loss"][-1]


def peak_rss_of_fit(data_dir: str, logdir: str, extra: Sequence[str] = ()) -> float:
    """Peak resident memory (MB) of `scripts/fit.py` on the full IMDB (train + val + test), in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = [sys.executable, str(ROOT / "scripts" / "fit.py"), "--data-dir", data_dir, "--max-epochs", "2",
           "--logdir", logdir, "--no-progress", "--accelerator", "cpu", *RSS_FIT_ARGS, *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("could not measure the child's peak RSS")
    return peak / 1024.0


def time_all(data_dir: str, peers: ModuleType, variants: Sequence[str], hiddens: Sequence[int], epochs: int,
             progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (hidden, variant): epoch times, min/median epoch seconds, last val loss."""
    npz = str(Path(data_dir) / "imdb.npz")
    seqs, y = peers.load(npz)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lit_bench_") as logdir:
        if any(v in LIT_VARIANTS for v in variants):
            # One untimed epoch first: one-time costs (Lightning, TensorBoard and sparse-kernel start-up) are
            # paid once per process, as in a sweep, and would otherwise land on whichever variant runs first.
            lit_epoch_times(data_dir, min(hiddens), 1, "sparse", logdir)
        for hidden in hiddens:
            for name in variants:
                progress(f"  timing {name} h={hidden} ({epochs} epochs) ...")
                torch.manual_seed(0)
                if name in LIT_VARIANTS:
                    times, vloss = lit_epoch_times(data_dir, hidden, epochs, LIT_VARIANTS[name], logdir)
                else:
                    times, vloss = peers.VARIANTS[name](seqs, y, hidden, epochs)
                rows.append({"variant": name, "hidden": hidden, "epoch_s": times, "min_epoch_s": min(times),
                             "median_epoch_s": statistics.median(times), "val_loss": float(vloss)})
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Ratio of each row's min epoch time to keras_fit's and lean_sparse's at the same hidden size."""
    for row in rows:
        for ref in ("keras_fit", "lean_sparse"):
            base = next((r for r in rows if r["variant"] == ref and r["hidden"] == row["hidden"]), None)
            row[f"vs_{ref}"] = row["min_epoch_s"] / base["min_epoch_s"] if base else None


def machine() -> str:
    """One line naming the machine the table was measured on."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The timing table as Markdown."""
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| variant | hidden | min s/epoch | median s/epoch | × keras fit | × lean sparse | last val loss |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['hidden']} | {r['min_epoch_s']:.3f} | {r['median_epoch_s']:.3f} | "
                     f"{fmt(r['vs_keras_fit'])} | {fmt(r['vs_lean_sparse'])} | {r['val_loss']:.3f} |")
    return "\n".join(lines)
