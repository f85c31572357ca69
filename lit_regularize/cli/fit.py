"""Train one regularized MLP and report the best-checkpoint and last-epoch test scores.

Examples:
  lit-regularize fit --reg dropout
  lit-regularize fit --config imdb_l2 --max-epochs 30
  lit-regularize fit --reg none --no-early-stopping --max-epochs 20
  lit-regularize fit --data fashion_mnist --n-per-class 100 --augment
  lit-regularize fit --train-size 1000 --kfold 4
  lit-regularize fit --resume lightning_logs/imdb_none/version_0 --max-epochs 30
  lit-regularize fit --data mnist --help        # the defaults MNIST's preset gives
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from lit_regularize.cli.args import command_parser, config_from_args, given_settings, guarded, print_config_and_exit
from lit_regularize.config import flag, resumable
from lit_regularize.errors import ConfigError


def parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """fit's flags: one per Config field, plus --resume."""
    p = command_parser("lit-regularize fit", __doc__, argv)
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                   help="continue a run from its checkpoints/last.ckpt (default: newest version of --name); only "
                        f"{', '.join(flag(k) for k in resumable())} may change")
    return p


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize fit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(argv).parse_args(argv)
    if args.resume:
        return _resume(args)
    cfg = config_from_args(args)
    if args.print_config:
        print_config_and_exit(cfg)
    if cfg.kfold < 2 and "population" in vars(args):  # given as a flag (--population K, --no-population, --pop K)
        print("warning: --population has no effect on a single fit (it groups the runs of compare, sweep and "
              "fit --kfold)", file=sys.stderr)

    from lit_regularize.callbacks import epoch_lines
    from lit_regularize.run import quiet_lightning, run

    quiet_lightning()
    with epoch_lines(unless_silenced=True):  # one line per epoch, also under --no-progress and in a log file
        if cfg.kfold >= 2 and cfg.fold is None:
            from lit_regularize.kfold import run_kfold

            summary = run_kfold(cfg)  # folds in worker processes (--kfold-workers) print none
        else:
            summary = run(cfg)
    _print_once(summary)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from lit_regularize.callbacks import epoch_lines
    from lit_regularize.config import make_config
    from lit_regularize.rundir import RunDir, resume_config
    from lit_regularize.run import quiet_lightning, run

    given = {k: v for k, v in given_settings(args).items()}
    if args.resume == "latest":
        base = make_config(given)
        rundir = RunDir.latest(base.logdir, base.run_name)
    else:
        rundir = RunDir.open(args.resume)
    saved = rundir.read_config()
    cfg = resume_config(saved, given)
    done = _epochs_done(rundir)
    if done is not None and cfg.max_epochs < done:  # Lightning would fail on it after config.yaml was rewritten
        raise ConfigError(f"--resume {rundir.path}: the run has already trained {done} epochs; "
                          f"--max-epochs {cfg.max_epochs} must be at least that (more epochs train on)")
    if args.print_config:
        print_config_and_exit(cfg)
    quiet_lightning()
    with epoch_lines(unless_silenced=True):
        summary = run(cfg, resume=rundir)
    _print_once(summary)
    return 0


def _epochs_done(rundir) -> Optional[int]:  # type: ignore[no-untyped-def]
    """Epochs the run's summary.json says it finished (None if it cannot tell)."""
    try:
        summary = rundir.read_summary()
    except (OSError, ValueError, TypeError):
        return None
    return summary.epochs_run if summary is not None and summary.epochs_run else None


def _print_once(summary) -> None:  # type: ignore[no-untyped-def]
    from pytorch_lightning.utilities import rank_zero_only

    from lit_regularize.report import print_summary

    if rank_zero_only.rank == 0:  # under DDP every rank returns the same summary: print it once
        print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
