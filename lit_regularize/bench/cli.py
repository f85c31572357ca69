"""`lit-regularize bench`: flags, section selection, progress lines and output; no timing code here."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence

from lit_regularize.bench import imdb, mnist, population, sweep
from lit_regularize.cli.args import OneLineParser, guarded
from lit_regularize.errors import UserError

SECTIONS = ("imdb", "mnist", "sweep", "population")
DOC = """Time lit_regularize beside its peers, in one run: IMDB epochs, Fashion-MNIST augmentation, sweep throughput,
populations.

Sections (default: all four, in this order):
  imdb   seconds per IMDB epoch (holdout 15,000 / 9,996, batch 512) of lit_sparse / lit_dense (fit's run(),
         Lightning with checkpoints and TensorBoard, timed from one epoch's start to the next so checkpoint writes
         and logging count) beside peers_imdb.py's loops (train + validation: keras_fit,
         lean_sparse, ...) at each --hidden, their ratios to keras fit and to the lean sparse loop, and the peak
         RSS of a full IMDB fit
  mnist  seconds per Fashion-MNIST training epoch on 10 x --n-per-class images: plain vs batch-augmented (lit's
         fit and a plain torch loop), and the notebooks' DataLoader with a per-image torchvision v2 transform
  sweep  trials/hour and epochs trained/hour (pruned trials' epochs included) of `lit-regularize sweep` with each
         --workers count beside peers_sweep.py with the same --jobs count, --n-trials x --sweep-epochs each
  population  compare imdb_penalty --seeds --pop-seeds, fit --kfold --pop-kfold and a --n-trials sweep with a fixed
         architecture, each with populations (the default) and one run at a time (--no-population): wall times
         and the speed-up (sweep: trials/h with --population --pop-size against --population 1)

Every timing is reported as minimum and median (epochs of a run; sweeps: whole studies over --repeats).
Progress lines go to stdout, or to stderr with --json (stdout then holds one JSON object).

Examples:
  lit-regularize bench --data-dir ../shared/data                      # all three sections, full settings
  lit-regularize bench imdb --data-dir ../shared/data --hidden 16 --imdb-variants lit_sparse keras_fit lean_sparse
  lit-regularize bench mnist sweep --data-dir ../shared/data --n-trials 8 --sweep-epochs 4 --workers 2
  lit-regularize bench --data-dir ../shared/data --epochs 2 --mnist-epochs 2 --n-trials 4 --sweep-epochs 2 --json
"""


def parser() -> OneLineParser:
    """bench's flags, grouped by section."""
    summary, _, rest = DOC.partition("\n\n")
    p = OneLineParser(prog="lit-regularize bench", description=summary, epilog=rest,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="*", metavar="SECTION", help=f"{' | '.join(SECTIONS)} (default: all)")
    p.add_argument("--data-dir", required=True, help="folder holding imdb.npz and FashionMNIST/raw")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    g = p.add_argument_group("imdb")
    g.add_argument("--peers", default=str(imdb.DEFAULT_PEERS), help=f"peers_imdb.py (default: {imdb.DEFAULT_PEERS})")
    g.add_argument("--imdb-variants", nargs="+", default=[], metavar="V",
                   help="lit_sparse | lit_dense | peers_imdb.py's VARIANTS (default: all)")
    g.add_argument("--hidden", type=int, nargs="+", default=[16, 512], help="hidden sizes (default: 16 512)")
    g.add_argument("--epochs", type=int, default=5, help="epochs per IMDB variant (default: 5)")
    g.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement of a full fit")
    g = p.add_argument_group("mnist")
    g.add_argument("--mnist-variants", nargs="+", default=[], metavar="V",
                   help=f"{' | '.join(mnist.VARIANTS)} (default: all)")
    g.add_argument("--n-per-class", type=int, default=1000, help="training images per class (default: 1000)")
    g.add_argument("--mnist-epochs", type=int, default=3, help="epochs per MNIST variant (default: 3)")
    g = p.add_argument_group("sweep")
    g.add_argument("--peers-sweep", default=str(sweep.DEFAULT_PEERS),
                   help=f"peers_sweep.py (default: {sweep.DEFAULT_PEERS})")
    g.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts (peers: --jobs) to time (default: 1 2)")
    g.add_argument("--n-trials", type=int, default=24, help="trials per study (default: 24)")
    g.add_argument("--sweep-epochs", type=int, default=8, help="max epochs per trial (default: 8)")
    g.add_argument("--repeats", type=int, default=1, help="studies per variant and worker count (default: 1)")
    g = p.add_argument_group("population (also uses --n-trials, --sweep-epochs, --repeats)")
    g.add_argument("--pop-seeds", type=int, default=3, help="compare's --seeds (default: 3)")
    g.add_argument("--pop-epochs", type=int, default=20, help="compare's --max-epochs (default: 20)")
    g.add_argument("--pop-kfold", type=int, default=5, help="fit's --kfold (default: 5)")
    g.add_argument("--pop-size", type=int, default=4, help="the sweep's --population (default: 4)")
    return p


def check(a: argparse.Namespace) -> list[str]:
    """The sections to run; every bad flag, name or missing file is a user error before anything is timed."""
    for s in a.sections:
        if s not in SECTIONS:
            raise UserError(f"unknown section {s!r} (choose from {', '.join(SECTIONS)})")
    sections = [s for s in SECTIONS if s in a.sections] if a.sections else list(SECTIONS)
    counts = {"--epochs": a.epochs, "--mnist-epochs": a.mnist_epochs, "--n-per-class": a.n_per_class,
              "--n-trials": a.n_trials, "--sweep-epochs": a.sweep_epochs, "--repeats": a.repeats,
              "--hidden": min(a.hidden), "--workers": min(a.workers), "--pop-seeds": a.pop_seeds,
              "--pop-epochs": a.pop_epochs, "--pop-size": a.pop_size}
    for flag, v in counts.items():
        if v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if "imdb" in sections:
        imdb.check(a.data_dir, imdb.load_peers(a.peers), a.imdb_variants)
    if "mnist" in sections:
        mnist.check(a.data_dir, a.mnist_variants)
    if "sweep" in sections:
        sweep.check(a.data_dir, a.peers_sweep)
    if "population" in sections:
        if a.pop_kfold < 2:
            raise UserError(f"--pop-kfold must be >= 2, got {a.pop_kfold}")
        population.check(a.data_dir)
    return sections


def run_sections(a: argparse.Namespace, sections: Sequence[str], log: Any) -> dict[str, Any]:
    """Each selected section's results, keyed by section name."""
    out: dict[str, Any] = {}
    for s in sections:
        log(f"[{s}] ...")
        if s == "imdb":
            out[s] = imdb.bench(a.data_dir, a.peers, a.imdb_variants, a.hidden, a.epochs, not a.no_rss, log)
        elif s == "mnist":
            out[s] = mnist.bench(a.data_dir, a.mnist_variants, a.n_per_class, a.mnist_epochs, progress=log)
        elif s == "sweep":
            out[s] = sweep.bench(a.data_dir, a.peers_sweep, a.workers, a.n_trials, a.sweep_epochs, a.repeats, log)
        else:
            out[s] = population.bench(a.data_dir, a.pop_seeds, a.pop_epochs, a.pop_kfold, a.n_trials, a.pop_size,
                                      a.sweep_epochs, a.repeats, log)
    return out


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize bench."""
    a = parser().parse_intermixed_args(argv)
    sections = check(a)
    from lit_regularize.bench.common import machine  # torch and Lightning only once the flags are known good
    from lit_regularize.bench.output import markdown_report
    from lit_regularize.run import quiet_lightning

    quiet_lightning()
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if a.json else (lambda s: print(s, flush=True))
    results = run_sections(a, sections, log)
    if a.json:
        print(json.dumps({"machine": machine(), **results}, indent=2))
    else:
        print("\n" + markdown_report(results, machine()))
    return 0


__all__ = ["main", "parser", "check", "run_sections", "SECTIONS"]
