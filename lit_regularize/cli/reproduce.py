"""Reproduce the notebooks' experiments (capacity, L1/L2, dropout, BatchNorm, Fashion-MNIST with 100 images per
class, k-fold) over several seeds, and write one self-contained HTML page and its Markdown twin.

Examples:
  lit-regularize reproduce --quick --data-dir ../shared/data --out /tmp/repro      # a few minutes on 2 cores
  lit-regularize reproduce --data-dir ../shared/data --out /tmp/repro_full        # 3 seeds, the full epochs
  lit-regularize reproduce --quick --only capacity penalties --out /tmp/repro
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from lit_regularize.cli.args import OneLineParser, guarded


def parser() -> argparse.ArgumentParser:
    """reproduce's flags."""
    from lit_regularize.reproduce import EXPERIMENTS

    summary, _, examples = (__doc__ or "").partition("\n\n")
    p = OneLineParser(prog="lit-regularize reproduce", description=summary, epilog=examples,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fewer epochs, 2 seeds: a few minutes on 2 CPU cores (a classroom's time)")
    p.add_argument("--out", default="reproduce", metavar="DIR",
                   help="folder for reproduce.html, reproduce.md, figures and run logs (default: reproduce)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding imdb.npz and FashionMNIST/raw (else "
                                                     "$LIT_REGULARIZE_DATA_DIR, else ~/.cache/lit_regularize)")
    p.add_argument("--only", nargs="+", metavar="NAME", default=(),
                   help="run only these experiments: " + ", ".join(e.name for e in EXPERIMENTS))
    p.add_argument("--seeds", type=int, metavar="K", help="seeds per setting (default: 3, --quick: 2)")
    p.add_argument("--progress", action="store_true", help="show every run's progress bar and epoch lines")
    return p


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize reproduce."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.seeds is not None and args.seeds < 1:
        from lit_regularize.errors import ConfigError

        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    from lit_regularize.reproduce import reproduce
    from lit_regularize.run import quiet_lightning

    quiet_lightning()
    fixed = {"progress": args.progress, **({"data_dir": args.data_dir} if args.data_dir else {})}
    written = reproduce(args.out, quick=args.quick, fixed=fixed, only=args.only, seeds=args.seeds)
    print(f"wrote {written['html']} and {written['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
