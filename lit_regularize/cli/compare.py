"""Compare regularizers: run a study (a shipped one or a YAML file) or read finished runs, then write
curves.png (train dashed, val solid, val accuracy), weights.png, sparsity.png, table.csv, results.csv and table.md
into --out.

With --seeds N every setting runs on N seeds; the table then gives each metric's mean, std and 95 % confidence
interval, and the paired difference from the baseline (the study's `none`, or --baseline NAME) over the same
seeds, with its interval, a paired t test (Wilcoxon signed-rank from 6 seeds) and a verdict: helps / hurts /
no detectable difference.

Examples:
  lit-regularize compare imdb_capacity --data-dir ../shared/data --out /tmp/cmp_capacity
  lit-regularize compare imdb_penalty --out /tmp/cmp_penalty --seeds 5 --max-epochs 10
  lit-regularize compare imdb_penalty --out /tmp/cmp_penalty --seeds 5 --baseline l2
  lit-regularize compare mnist100 --data fashion_mnist --out /tmp/cmp_mnist
  lit-regularize compare --runs lightning_logs/imdb_none lightning_logs/imdb_l2 --out /tmp/cmp

Data and training flags (--data-dir, --max-epochs, --lr ...) are fixed settings applied to every run of the
study; the settings the study varies cannot be fixed. Runs are logged under <out>/logs (tensorboard --logdir).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from lit_regularize.cli.args import command_parser, given_settings, guarded

SKIP = ("logdir", "name", "kfold", "kfold_repeats", "kfold_workers")


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize compare."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = command_parser("lit-regularize compare", __doc__, argv, skip=SKIP)
    from lit_regularize.config import available_studies

    parser.add_argument("study", nargs="?", help=f"a shipped study name ({', '.join(available_studies())}) "
                                                 "or a study YAML file")
    parser.add_argument("--runs", nargs="+", metavar="DIR", default=(), help="compare finished runs instead")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for figures, tables and run logs")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="repeat every run over K seeds: mean ± std bands, 95 %% intervals and paired tests "
                             "against the baseline (5 or more for verdicts worth reading) (default: 1)")
    parser.add_argument("--baseline", metavar="NAME", default=None,
                        help="the run the others are compared with (default: the one named none, else the first)")
    parser.add_argument("--rerun", action="store_true", help="train again even if an identical run finished")
    args = parser.parse_args(argv)
    fixed = given_settings(args)

    from lit_regularize.comparison import compare
    from lit_regularize.run import quiet_lightning

    quiet_lightning()
    result = compare(args.study, args.runs, args.out, fixed, args.seeds, args.rerun, baseline=args.baseline)
    print()
    print(result["markdown"])
    for path in list(result["figures"].values()) + [result["table_csv"], result["results_csv"], result["table_md"]]:
        print(f"wrote {path}")
    print(f"TensorBoard: tensorboard --logdir {Path(args.out) / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
