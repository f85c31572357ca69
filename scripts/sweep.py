#!/usr/bin/env python
"""Optuna study over fit.py's runs: search hidden size, depth, regularizer and its strength, learning rate.

Every fit.py flag is a fixed setting of all trials; the searched settings come from --space
(configs/search_space.yaml). Re-running the same command resumes the study; --n-trials is the total number of
finished (complete + pruned) trials.

Examples:
  python scripts/sweep.py --n-trials 24 --workers 2 --max-epochs 8 --study-name imdb24
  python scripts/sweep.py --study-name imdb24 --n-trials 0 --report reports/imdb24 --refit-best
  python scripts/sweep.py --train-size 1000 --kfold 4 --n-trials 30 --study-name small_kfold
  python scripts/sweep.py --storage postgresql://user@db-host/optuna --study-name shared   # on every machine
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_regularize import tuning  # noqa: E402
from lit_regularize.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, config_parser, guarded  # noqa: E402
from lit_regularize.config import FIELDS, check_keys, load_yaml, make_config  # noqa: E402
from lit_regularize.errors import ConfigError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    """fit.py's flags (fixed for every trial) plus the study's own."""
    p = config_parser(__doc__, skip=("name", "fold"))
    s = p.add_argument_group("study")
    unset = {"default": argparse.SUPPRESS}  # no "(default: None)" in --help; main() fills in None
    s.add_argument("--n-trials", type=int, default=20,
                   help="finished (complete + pruned) trials wanted in total")
    s.add_argument("--timeout", type=float, **unset, help="stop starting new trials after this many seconds")
    s.add_argument("--study-name", **unset,
                   help="study name, also its folder under --logdir (default: <data>_sweep)")
    s.add_argument("--storage", **unset,
                   help="database URL (postgresql://..., mysql://..., sqlite:///...), a .db file or an "
                        "Optuna journal file (*.log) (default: optuna/<study>.db)")
    s.add_argument("--workers", type=int, **unset,
                   help="worker processes on this machine (default: one per GPU, else 1)")
    s.add_argument("--gpus", **unset,
                   help="GPU ids to pin one worker each to, e.g. 0,1, or none (default: all visible)")
    s.add_argument("--sampler", default="tpe", choices=tuning.SAMPLERS, help="Optuna sampler (seed: --seed)")
    s.add_argument("--pruner", default="median", choices=list(tuning.PRUNERS),
                   help="pruner fed with val/loss every epoch")
    s.add_argument("--space", default=str(tuning.DEFAULT_SPACE), metavar="FILE", help="search-space YAML")
    s.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help=f"RDB heartbeat interval; a trial silent for {tuning.GRACE_FACTOR}x this is failed "
                        "and retried (0 = off)")
    s.add_argument("--report", metavar="DIR", **unset,
                   help="write a leaderboard (CSV, Markdown) and Optuna's plots to DIR")
    s.add_argument("--refit-best", nargs="?", const="holdout", choices=("holdout", "all"), **unset,
                   help="retrain the best trial's config with its seed (all: on train+val for its best epoch "
                        "count)")
    return p


def fixed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--config YAML + given flags: the Config overrides every trial shares."""
    fixed: dict[str, Any] = {}
    if args.config:
        fixed.update(load_yaml(args.config))
        check_keys(fixed, f"--config {args.config}")
    fixed.update({k: v for k, v in vars(args).items() if k in FIELDS})
    for key in ("name", "fold"):
        fixed.pop(key, None)
    fixed.setdefault("progress", False)  # progress bars of parallel workers interleave
    if str(fixed.get("devices", "1")) != "1" or fixed.get("strategy", "auto") != "auto":
        raise ConfigError("--devices/--strategy: a sweep trial uses exactly one device; "
                          "use --workers and --gpus for parallel trials")
    base = make_config(fixed, "flags")  # validate once, before any worker starts
    if base.val_size == 0 and base.kfold < 2 and not base.val_on_test:
        raise ConfigError("--val-size 0: a sweep minimizes val/loss, so it needs a validation set "
                          "(or --kfold)")
    return fixed


def check_data(fixed: dict[str, Any]) -> None:
    """Load the data once so a missing or bad file is one error line, not a failed trial per worker."""
    from lit_regularize.data import build_datamodule

    build_datamodule(make_config(fixed)).setup("fit")


def print_results(study: Any, sweep: tuning.Sweep, minutes: float) -> None:
    """Trial counts, best trial and where everything lives."""
    counts = tuning.state_counts(study)
    shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    print(f"study {sweep.study_name}: {tuning.counted(study)}/{sweep.n_trials} finished trials ({shown}); "
          f"this invocation {minutes:.1f} min; storage {tuning.shown_url(sweep.storage)}")
    try:
        best = study.best_trial
    except ValueError:
        print("no complete trial yet")
        return
    u = best.user_attrs
    print(f"best trial {best.number}: val/loss {best.value:.4f}  val/acc {_f(u.get('val_acc'))}  best epoch "
          f"{u.get('best_epoch')}  test acc {_f(u.get('test_acc'))}  params {best.params}")
    print(f"best run:   {u.get('log_dir')}")


def _f(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def refit(study: Any, mode: str) -> None:
    """--refit-best: retrain and compare with the trial."""
    best = study.best_trial
    result = tuning.refit_best(study, all_data=mode == "all")
    a = result.attrs
    if mode == "all":
        print(f"refit of trial {best.number} on train+val for {a['epochs_run']} epochs: test acc "
              f"{_f(a['test_acc_last'])}  (trial: test acc {_f(best.user_attrs.get('test_acc'))})")
    else:
        diff = result.value - best.value if result.value is not None else math.nan
        print(f"refit of trial {best.number}: val/loss {_f(result.value)} (trial {best.value:.4f}, diff "
              f"{diff:+.4f})  val/acc {_f(a['val_acc'])}  test acc {_f(a['test_acc'])}  test loss "
              f"{_f(a['test_loss'])}")
    print(f"refit run:  {a['log_dir']}")


def make_sweep(args: argparse.Namespace) -> tuning.Sweep:
    """Validate every flag, the space and the data before anything is written."""
    fixed = fixed_settings(args)
    space = tuning.load_space(args.space)
    tuning.check_space(tuning.parse_space(space, f"--space {args.space}"), fixed, f"--space {args.space}")
    name = args.study_name or f"{make_config(fixed).data}_sweep"
    if not tuning.STUDY_NAME.match(name):
        raise ConfigError(f"--study-name {name!r}: use letters, digits, '_', '-', '.' (it names a folder)")
    if args.n_trials < 0 or (args.timeout is not None and args.timeout <= 0) or args.heartbeat < 0:
        raise ConfigError("--n-trials and --heartbeat must be >= 0, --timeout > 0")
    sweep = tuning.Sweep(study_name=name, storage=tuning.storage_url(args.storage, name), fixed=fixed,
                         space=space, n_trials=args.n_trials, timeout=args.timeout, sampler=args.sampler,
                         pruner=args.pruner, heartbeat=args.heartbeat)
    tuning.make_sampler(sweep.sampler, 0)  # a missing sampler dependency fails here, once
    if sweep.n_trials:
        check_data(fixed)
    return sweep


def note_settings(study: Any, sweep: tuning.Sweep) -> None:
    """Record the fixed settings with a new study; warn when a resumed study had others."""
    noted = study.user_attrs.get("fixed")
    if noted is None:
        study.set_user_attr("fixed", sweep.fixed)
        study.set_user_attr("space", sweep.space)
    elif noted != sweep.fixed:
        changed = sorted(k for k in set(noted) | set(sweep.fixed) if noted.get(k) != sweep.fixed.get(k))
        print(f"note: study {sweep.study_name} was started with other fixed settings ({', '.join(changed)}); "
              "its trials may not be comparable", file=sys.stderr)


@guarded
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    for name in ("timeout", "study_name", "storage", "workers", "gpus", "report", "refit_best"):
        vars(args).setdefault(name, None)
    from lit_regularize.run import RunInterrupted, quiet_lightning

    quiet_lightning()
    sweep = make_sweep(args)
    gpus = tuning.visible_gpus(args.gpus)
    where = tuning.placements(args.workers or max(1, len(gpus)), gpus, os.cpu_count() or 1)
    study = sweep.open()
    note_settings(study, sweep)
    t0, code = time.perf_counter(), 0
    try:
        if tuning.counted(study) >= sweep.n_trials:
            pass
        elif len(where) == 1 and where[0].cuda_visible_devices is None:
            tuning.run_worker(sweep)  # one CPU worker: in this process
        elif EXIT_USER_ERROR in tuning.launch(sweep, where):
            code = EXIT_USER_ERROR
    except (KeyboardInterrupt, RunInterrupted):
        tuning.reap_dead_workers(study)
        print(f"interrupted: study {sweep.study_name} keeps its {tuning.counted(study)} finished trials; "
              "interrupted trials are queued again; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    tuning.reap_dead_workers(study)
    print_results(study, sweep, (time.perf_counter() - t0) / 60)
    if code == 0 and tuning.counted(study) < sweep.n_trials and sweep.timeout is None:
        print(f"study {sweep.study_name} has {tuning.counted(study)} of {sweep.n_trials} trials: a worker "
              "stopped early (see above); re-run to continue", file=sys.stderr)
        code = 1
    if args.report:
        files = tuning.write_report(study, args.report)
        print(f"report:     {len(files)} files in {args.report}")
    if args.refit_best and any(t.state.name == "COMPLETE" for t in study.trials):
        refit(study, args.refit_best)
    print(f"dashboard:  {tuning.dashboard_command(sweep.storage)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
