"""An Optuna study over fit's runs: search hidden size, depth, regularizer and its strength, learning rate.

Every fit flag is a fixed setting of all trials; the searched settings come from --space (default: the shipped
search_space.yaml). Trials see validation data only; --confirm-top K re-trains the K best trials with
--confirm-seeds N new seeds each (validation only) and picks the winner by the confirmed mean; --refit-best tests
the (confirmed) winner once, the study's final untouched test estimate. --objectives val/loss,params makes
capacity a cost: the report draws the Pareto front of val/loss against the parameter count. Re-running the same
command resumes the study (and its confirmation); --n-trials is the total number of finished (complete + pruned)
trials. A report is written to <logdir>/<study>/report/ at the end of every run;
every output folder is checked before the first trial, and <logdir>/<study> belongs to one storage's study.

Examples:
  lit-regularize sweep --n-trials 24 --workers 2 --max-epochs 8 --study-name imdb24
  lit-regularize sweep --study-name imdb24 --n-trials 0 --report reports/imdb24 --refit-best all
  lit-regularize sweep --study-name imdb24 --n-trials 24 --max-epochs 8 --confirm-top 3 --confirm-seeds 3 --refit-best
  lit-regularize sweep --objectives val/loss,params --n-trials 30 --max-epochs 8 --study-name imdb_pareto
  lit-regularize sweep --train-size 1000 --kfold 4 --n-trials 30 --study-name small_kfold
  lit-regularize sweep --storage postgresql://user@db-host/optuna --study-name shared   # on every machine
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

from lit_regularize.cli.args import command_parser, given_settings, guarded
from lit_regularize.config import make_config

SAMPLERS = ("tpe", "random", "gp", "qmc")  # lit_regularize.sweeps.storage.SAMPLERS / PRUNERS (no optuna import)
PRUNERS = ("median", "hyperband", "halving", "none")
GRACE_FACTOR = 3


def parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """fit's flags (fixed for every trial) plus the study's own."""
    p = command_parser("lit-regularize sweep", __doc__, argv, skip=("name",))
    s = p.add_argument_group("study")
    unset = {"default": None}
    s.add_argument("--n-trials", type=int, default=20, help="finished (complete + pruned) trials wanted in total (default: 20)")
    s.add_argument("--timeout", type=float, **unset, help="stop starting new trials after this many seconds")
    s.add_argument("--study-name", **unset, help="study name, also its folder under --logdir (default: "
                                                 "<data>_sweep)")
    s.add_argument("--storage", **unset, help="database URL (postgresql://..., mysql://..., sqlite:///...), a .db "
                                              "file or an Optuna journal file (*.log) (default: optuna/<study>.db)")
    s.add_argument("--workers", type=int, **unset, help="worker processes on this machine (default: one per GPU, "
                                                        "else 1; at most one per core without GPUs)")
    s.add_argument("--gpus", **unset, help="GPU ids to pin one worker each to, e.g. 0,1, or none (default: all "
                                           "visible)")
    s.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="Optuna sampler, seeded by --seed "
                                                                      "(gp and qmc need scipy) (default: tpe)")
    s.add_argument("--pruner", default="median", choices=PRUNERS,
                   help="pruner fed val/loss every epoch; warm-up scaled to --max-epochs, the first 5 trials and "
                        "final epochs are never pruned (default: median)")
    s.add_argument("--space", **unset, metavar="FILE", help="search-space YAML (default: the shipped "
                                                            "search_space.yaml)")
    s.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help=f"RDB heartbeat interval; a trial silent for {GRACE_FACTOR}x this is failed and retried "
                        "(0 = off; default: 10)")
    s.add_argument("--allow-changed-settings", action="store_true",
                   help="resume a study although fixed settings (data, training) differ from its start")
    s.add_argument("--report", metavar="DIR", **unset,
                   help="also write the report (leaderboard, figures, report.md) to DIR")
    s.add_argument("--objectives", default="val/loss", metavar="LIST",
                   help="what the study minimizes: val/loss, or val/loss,params (the parameter count as a cost: a "
                        "Pareto front, no pruning) (default: val/loss)")
    s.add_argument("--confirm-top", type=int, default=0, metavar="K",
                   help="after the trials, re-train the K best complete trials with --confirm-seeds new seeds each "
                        "(validation only; finished runs are kept) and pick the winner by their mean (default: 0, "
                        "off)")
    s.add_argument("--confirm-seeds", type=int, default=3, metavar="N",
                   help="new seeds per confirmed trial (trial seed + 1000, + 2000, ...; at least 2) (default: 3)")
    s.add_argument("--refit-best", nargs="?", const="holdout", choices=("holdout", "all"), **unset,
                   help="retrain the confirmed winner (else the best trial) with its seed and test it once: the final "
                        "untouched test estimate (all: on its training + validation examples for its best epoch "
                        "count); a later refit is counted as the study's 2nd, 3rd ... look at the test set")
    return p


def fixed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--config YAML + given flags: the Config overrides every trial shares (checked by session.check_fixed)."""
    from lit_regularize.sweeps.session import check_fixed

    return check_fixed(given_settings(args))


def request(args: argparse.Namespace) -> Any:
    """The parsed command line as a SweepRequest (the study's flags and the fixed settings)."""
    from lit_regularize.sweeps.session import SweepRequest

    return SweepRequest(n_trials=args.n_trials, timeout=args.timeout, study_name=args.study_name,
                        storage=args.storage, workers=args.workers, gpus=args.gpus, sampler=args.sampler,
                        pruner=args.pruner, space=args.space, heartbeat=args.heartbeat,
                        allow_changed_settings=args.allow_changed_settings, report=args.report,
                        refit_best=args.refit_best, confirm_top=args.confirm_top, confirm_seeds=args.confirm_seeds,
                        objectives=args.objectives, fixed=given_settings(args))


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize sweep."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(argv).parse_args(argv)
    if args.print_config:
        from lit_regularize.cli.args import print_config_and_exit

        print_config_and_exit(make_config(fixed_settings(args)))
    from lit_regularize.sweeps.session import run_sweep

    return run_sweep(request(args)).code


if __name__ == "__main__":
    sys.exit(main())
