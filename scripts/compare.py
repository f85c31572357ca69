#!/usr/bin/env python
"""Compare regularizers: run a study (configs/studies/<name>.yaml) or read finished runs, then write
curves.png (val + train loss), weights.png, sparsity.png, table.csv, table.md into --out.

Examples:
  python scripts/compare.py imdb_capacity --data-dir ../shared/data --out /tmp/cmp_capacity
  python scripts/compare.py imdb_penalty --out /tmp/cmp_penalty --seeds 3 --max-epochs 10
  python scripts/compare.py mnist100 --data fashion_mnist --out /tmp/cmp_mnist
  python scripts/compare.py --runs lightning_logs/imdb_none lightning_logs/imdb_l2 --out /tmp/cmp
Data and training flags (--data-dir, --max-epochs, --lr ...) are fixed settings applied to every run of the
study; the settings the study varies cannot be fixed. Runs are logged under <out>/logs (tensorboard --logdir).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_regularize.cli import config_parser, guarded  # noqa: E402
from lit_regularize.compare import available_studies, compare  # noqa: E402
from lit_regularize.config import FIELDS, check_keys, load_yaml  # noqa: E402


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser(__doc__, skip=("logdir", "name", "kfold", "fold", "kfold_repeats",
                                          "kfold_workers"))
    parser.add_argument("study", nargs="?",
                        help=f"study name ({', '.join(available_studies())}) or a YAML file")
    parser.add_argument("--runs", nargs="+", metavar="DIR", default=(), help="compare finished runs instead")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for figures, tables and run logs")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="repeat every run over K seeds (mean ± std bands)")
    parser.add_argument("--rerun", action="store_true", help="train again even if an identical run finished")
    args = parser.parse_args(argv)
    fixed = load_yaml(args.config) if args.config else {}
    check_keys(fixed, f"--config {args.config}")
    fixed.update({k: v for k, v in vars(args).items() if k in FIELDS})

    from lit_regularize.run import quiet_lightning

    quiet_lightning()
    result = compare(args.study, args.runs, args.out, fixed, args.seeds, args.rerun)
    print()
    print(result["markdown"])
    for path in list(result["figures"].values()) + [result["table_csv"], result["table_md"]]:
        print(f"wrote {path}")
    print(f"TensorBoard: tensorboard --logdir {Path(args.out) / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
