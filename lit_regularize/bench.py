"""Time lit_regularize's fit (sparse and dense first layer) beside the peer loops of peers_imdb.py, in one run.

Reports seconds per epoch (train + validation; holdout 15,000 / 9,996, batch 512), the ratio of each to keras'
model.fit and to the lean sparse torch loop at the same hidden size, and the peak RSS of a full IMDB fit.

Examples:
  lit-regularize bench --data-dir ../shared/data
  lit-regularize bench --data-dir ../shared/data --hidden 16 --epochs 3 lit_sparse keras_fit lean_sparse --json
"""
from __future__ import annotations

import argparse
import json

import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

from lit_regularize.cli.args import guarded
from lit_regularize.config import make_config
from lit_regularize.errors import UserError

DEFAULT_PEERS = Path("..") / "shared" / "bench" / "peers_imdb.py"
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
    return summary.history["epoch_time"], summary.history["val_loss"][-1]


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
             progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (hidden, variant): epoch times, min/median epoch seconds, last val loss."""
    npz = str(Path(data_dir) / "imdb.npz")
    seqs, y = peers.load(npz)
    import torch

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
    import torch

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


def parser() -> argparse.ArgumentParser:
    """bench's flags."""
    from lit_regularize.cli.args import OneLineParser

    summary, _, rest = __doc__.partition("\n\n")
    p = OneLineParser(prog="lit-regularize bench", description=summary, epilog=rest,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", help="lit_sparse | lit_dense | seed000 | keras_fit | lean_dense | "
                                               "lean_sparse (default: all)")
    p.add_argument("--data-dir", required=True, help="folder holding imdb.npz")
    p.add_argument("--peers", default=str(DEFAULT_PEERS), help=f"path of peers_imdb.py (default: {DEFAULT_PEERS})")
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 512], help="hidden sizes to time (default: 16 512)")
    p.add_argument("--epochs", type=int, default=5,
                   help="epochs per variant (the minimum and median epoch times are reported) (default: 5)")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement of a full fit")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    return p


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize bench."""
    from lit_regularize.run import quiet_lightning

    a = parser().parse_intermixed_args(argv)
    peers = load_peers(a.peers)
    known = list(LIT_VARIANTS) + list(peers.VARIANTS)
    variants = a.variants or known
    for v in variants:
        if v not in known:
            raise UserError(f"unknown variant {v!r} (choose from {', '.join(known)})")
    if not (Path(a.data_dir) / "imdb.npz").is_file():
        raise UserError(f"--data-dir {a.data_dir}: no imdb.npz there")
    quiet_lightning()
    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    rss = None
    if not a.no_rss:
        log("measuring peak RSS of lit-regularize fit on the full IMDB ...")
        with tempfile.TemporaryDirectory(prefix="lit_rss_") as d:
            rss = peak_rss_of_fit(a.data_dir, d)
    rows = time_all(a.data_dir, peers, variants, a.hidden, a.epochs, progress=log)
    if a.json:
        print(json.dumps({"machine": machine(), "peak_rss_mb": rss, "rows": rows}, indent=2))
    else:
        print(f"\nmachine: {machine()}")
        print(markdown_table(rows))
        if rss is not None:
            print(f"\npeak RSS of lit-regularize fit on full IMDB (train + val + test): {rss:.0f} MB")
    return 0
