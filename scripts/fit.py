#!/usr/bin/env python
"""Train one regularized MLP (IMDB or MNIST) and report the best-checkpoint and last-epoch test scores.

Examples:
  python scripts/fit.py --reg dropout
  python scripts/fit.py --config configs/imdb_l2.yaml --max-epochs 30
  python scripts/fit.py --reg none --no-early-stopping --max-epochs 20
  python scripts/fit.py --data fashion_mnist --n-per-class 100 --augment
  python scripts/fit.py --train-size 1000 --kfold 4
  python scripts/fit.py --resume lightning_logs/imdb_none/version_0
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_regularize.cli import config_parser, guarded  # noqa: E402
from lit_regularize.config import FIELDS, config_from_args  # noqa: E402
from lit_regularize.report import print_summary  # noqa: E402


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser(__doc__)
    parser.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                        help="continue a run from its checkpoints/last.ckpt (default: newest version of --name)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from lit_regularize.run import latest_version, quiet_lightning, resume_config, run

    quiet_lightning()
    if cfg.kfold >= 2 and cfg.fold is None:
        from lit_regularize.kfold import run_kfold

        summary = run_kfold(cfg)
    elif args.resume:
        run_dir = latest_version(cfg) if args.resume == "latest" else Path(args.resume)
        given = {k: v for k, v in vars(args).items() if k in FIELDS}
        cfg = resume_config(run_dir, given)
        summary = run(cfg, resume_dir=run_dir)
    else:
        summary = run(cfg)
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP every rank returns the same summary: print it once
        print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
