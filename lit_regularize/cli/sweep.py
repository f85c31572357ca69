"""An Optuna study over fit's runs: search hidden size, depth, regularizer and its strength, learning rate.

Every fit flag is a fixed setting of all trials; the searched settings come from --space (default: the shipped
search_space.yaml). Trials see validation data only; --refit-best tests the best trial once, the study's final
untouched test estimate. Re-running the same command resumes the study; --n-trials is the total number of
finished (complete + pruned) trials. A report is written to <logdir>/<study>/report/ at the end of every run.

Examples:
  lit-regularize sweep --n-trials 24 --workers 2 --max-epochs 8 --study-name imdb24
  lit-regularize sweep --study-name imdb24 --n-trials 0 --report reports/imdb24 --refit-best all
  lit-regularize sweep --train-size 1000 --kfold 4 --n-trials 30 --study-name small_kfold
  lit-regularize sweep --storage postgresql://user@db-host/optuna --study-name shared   # on every machine
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_regularize.cli.args import EXIT_INTERRUPTED, EXIT_USER_ERROR, command_parser, given_settings, guarded
from lit_regularize.config import make_config
from lit_regularize.errors import ConfigError

SAMPLERS = ("tpe", "random", "gp", "qmc")  # lit_regularize.sweep.storage.SAMPLERS / PRUNERS (no optuna import)
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
    s.add_argument("--refit-best", nargs="?", const="holdout", choices=("holdout", "all"), **unset,
                   help="retrain the best trial with its seed and test it once: the final untouched test estimate "
                        "(all: on its training + validation examples for its best epoch count)")
    return p


def fixed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--config YAML + given flags: the Config overrides every trial shares."""
    fixed = given_settings(args)
    fixed.pop("name", None)
    if fixed.get("fold") is not None:
        raise ConfigError("--fold: a sweep runs every fold of --kfold itself")
    fixed.pop("fold", None)
    fixed.setdefault("progress", False)  # progress bars of parallel workers interleave
    if str(fixed.get("devices", "1")) != "1" or fixed.get("strategy", "auto") != "auto":
        raise ConfigError("--devices/--strategy: a sweep trial uses exactly one device; "
                          "use --workers and --gpus for parallel trials")
    base = make_config(fixed, "flags")  # validate once, before any worker starts
    if base.val_on_test:
        raise ConfigError("--val-on-test: a sweep must not choose settings on the test set")
    if base.val_size == 0 and base.kfold < 2:
        raise ConfigError("--val-size 0: a sweep minimizes val/loss, so it needs a validation set (or --kfold)")
    return fixed


def check_data(fixed: dict[str, Any]) -> None:
    """Load the data once so a missing or bad file is one error line, not a failed trial per worker."""
    from lit_regularize.run import build_datamodule

    build_datamodule(make_config(fixed)).setup("fit")


def make_sweep(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Validate every flag, the space and the data before anything is written."""
    from lit_regularize.sweep.space import check_space, default_space, load_space, parse_space
    from lit_regularize.sweep.storage import make_sampler, storage_url
    from lit_regularize.sweep.study import STUDY_NAME, Sweep

    if args.report and Path(args.report).exists() and not Path(args.report).is_dir():
        raise ConfigError(f"--report {args.report}: is a file, not a folder")
    for flag, value, ok, rule in (("--n-trials", args.n_trials, args.n_trials >= 0, ">= 0"),
                                  ("--heartbeat", args.heartbeat, args.heartbeat >= 0, ">= 0"),
                                  ("--timeout", args.timeout, args.timeout is None or args.timeout > 0, "> 0")):
        if not ok:
            raise ConfigError(f"{flag} must be {rule}, got {value}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    fixed = fixed_settings(args)
    space_path = args.space or str(default_space())
    space = load_space(space_path)
    check_space(parse_space(space, f"--space {space_path}"), fixed, f"--space {space_path}")
    name = args.study_name or f"{make_config(fixed).data_kind}_sweep"
    if not STUDY_NAME.match(name):
        raise ConfigError(f"--study-name {name!r}: use letters, digits, '_', '-', '.' (it names a folder)")
    sweep = Sweep(study_name=name, storage=storage_url(args.storage, name), fixed=fixed, space=space,
                  n_trials=args.n_trials, timeout=args.timeout, sampler=args.sampler, pruner=args.pruner,
                  heartbeat=args.heartbeat, allow_changed_settings=args.allow_changed_settings)
    make_sampler(sweep.sampler, 0)  # a missing sampler dependency fails here, once
    return sweep


def refit(study: Any, mode: str) -> None:
    """--refit-best: retrain the best trial and test it: the one look at the test set."""
    from lit_regularize.sweep.study import refit_best
    from lit_regularize.tables import fmt

    r = refit_best(study, mode)
    where = ("on its training + validation examples" if r["mode"] == "all" else "on its training examples")
    print(f"refit of trial {r['trial']} {where} for {r['epochs']} epochs")
    if r["mode"] != "all":
        print(f"  val/loss {fmt(r['val_loss'])} (trial {fmt(r['trial_val_loss'])})")
    print(f"final untouched test estimate: test acc {fmt(r['test_acc'])}  test loss {fmt(r['test_loss'])}  "
          f"({r['weights']} weights; the only test-set evaluation of this study)")
    print(f"refit run:  {r['run_dir']}")


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    """lit-regularize sweep."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(argv).parse_args(argv)
    if args.print_config:
        from lit_regularize.cli.args import print_config_and_exit

        print_config_and_exit(make_config(fixed_settings(args)))
    sweep = make_sweep(args)

    from lit_regularize.errors import RunInterrupted
    from lit_regularize.run import quiet_lightning
    from lit_regularize.sweep import report, workers
    from lit_regularize.sweep.study import counted, quiet_optuna

    quiet_lightning()
    quiet_optuna()
    if sweep.n_trials == 0 and not sweep.exists():
        raise ConfigError(f"--study-name {sweep.study_name}: no such study in {sweep.storage} (--n-trials 0 only "
                          "reports or refits an existing study)")
    gpus = workers.visible_gpus(args.gpus)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        where = workers.placements(args.workers or max(1, len(gpus)), gpus, workers.usable_cpus())
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if sweep.n_trials and sweep.n_trials > 0:
        check_data(sweep.fixed)
    study = sweep.open()
    if sweep.n_trials == 0:  # only a report / refit: the study's own settings, whatever flags were given
        import dataclasses

        sweep = dataclasses.replace(sweep, fixed=study.user_attrs.get("fixed", sweep.fixed),
                                    space=study.user_attrs.get("space", sweep.space))
    else:
        sweep.record_or_check(study)
    t0, code = time.perf_counter(), 0
    try:
        if counted(study) >= sweep.n_trials:
            pass
        elif len(where) == 1 and where[0].cuda_visible_devices is None:
            workers.run_worker(sweep, threads=where[0].threads)  # one CPU worker: in this process
        elif EXIT_USER_ERROR in workers.launch(sweep, where):
            code = EXIT_USER_ERROR
    except (KeyboardInterrupt, RunInterrupted):
        workers.reap_dead_workers(study)
        print(f"interrupted: study {sweep.study_name} keeps its {counted(study)} finished trials; interrupted "
              "trials are queued again; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    workers.reap_dead_workers(study)
    print(report.final_block(study, sweep.n_trials, (time.perf_counter() - t0) / 60, sweep.storage))
    if code == 0 and counted(study) < sweep.n_trials and sweep.timeout is None:
        print(f"study {sweep.study_name} has {counted(study)} of {sweep.n_trials} trials: a worker stopped early "
              "(see above); re-run to continue", file=sys.stderr)
        code = 1
    if args.refit_best:
        from lit_regularize.sweep.study import best_trial

        if best_trial(study) is None:
            print("--refit-best: no complete trial to refit", file=sys.stderr)
        else:
            refit(study, args.refit_best)
    for out in [Path(sweep.base.logdir) / sweep.study_name / "report"] + ([Path(args.report)] if args.report else []):
        files = report.write_report(study, out, sweep.space, sweep.fixed, sweep.storage)
        print(f"report:     {out / 'report.md'} ({len(files)} files)")
    for note in report.study_warnings(study, sweep.space, sweep.base.max_epochs):
        print(f"warning: {note}", file=sys.stderr)
    print(f"dashboard:  {report.dashboard_hint(sweep.storage)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
