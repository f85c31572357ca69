"""One sweep session, for the command line and the Python API alike: check every input and output place, run the
trials (in this process or in worker processes), confirm the winner with new seeds, refit, write the report.

`SweepRequest` holds what `lit-regularize sweep` parses; `run_sweep(request)` does what the command does and
returns the study with the exit code the command ends with.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lit_regularize.config import make_config
from lit_regularize.errors import ConfigError

EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130


@dataclass
class SweepRequest:
    """A sweep as asked for: the study's options and the settings every trial shares (`fixed`, named as flags)."""

    n_trials: int = 20
    timeout: Optional[float] = None
    study_name: Optional[str] = None
    storage: Optional[str] = None
    workers: Optional[int] = None
    gpus: Optional[str] = None
    sampler: str = "tpe"
    pruner: str = "median"
    space: Optional[str] = None
    heartbeat: int = 10
    allow_changed_settings: bool = False
    report: Optional[str] = None
    refit_best: Optional[str] = None
    confirm_top: int = 0
    confirm_seeds: int = 3
    objectives: Any = "val/loss"  # "val/loss" or "val/loss,params" (or a list of names)
    fixed: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepOutcome:
    """The study after the session, the exit code the command ends with, and the refit (if any)."""

    study: Any
    code: int
    refit: Optional[dict[str, Any]] = None


def check_fixed(given: dict[str, Any]) -> dict[str, Any]:
    """The Config overrides every trial shares, checked once before any worker starts."""
    fixed = dict(given)
    fixed.pop("name", None)
    if fixed.get("fold") is not None:
        raise ConfigError("--fold: a sweep runs every fold of --kfold itself")
    fixed.pop("fold", None)
    if str(fixed.get("devices", "1")) != "1" or fixed.get("strategy", "auto") != "auto":
        raise ConfigError("--devices/--strategy: a sweep trial uses exactly one device; "
                          "use --workers and --gpus for parallel trials")
    base = make_config(fixed, "flags")  # validate once, before any worker starts
    if base.val_on_test:
        raise ConfigError("--val-on-test: a sweep must not choose settings on the test set")
    if base.val_size == 0 and base.kfold < 2:
        raise ConfigError("--val-size 0: a sweep minimizes val/loss, so it needs a validation set (or --kfold)")
    if base.plugins:  # worker processes import the plug-ins the trials' regularizers come from
        fixed["plugins"] = list(base.plugins)
    return fixed


def check_data(fixed: dict[str, Any]) -> None:
    """Load the data once so a missing or bad file is one error line, not a failed trial per worker; with --kfold
    check its folds' classes once for the whole study (kfold.check_fold_classes), not per trial."""
    cfg = make_config(fixed)
    if cfg.kfold >= 2:
        from lit_regularize.kfold import check_fold_classes

        check_fold_classes(cfg)
        return
    from lit_regularize.run import build_datamodule

    build_datamodule(cfg).setup("fit")


def make_sweep(request: SweepRequest) -> Any:
    """Validate every option, the space and the data before anything is written; the Sweep workers get."""
    from lit_regularize.sweeps.space import check_space, default_space, load_space, parse_space
    from lit_regularize.sweeps.storage import make_sampler, storage_url
    from lit_regularize.sweeps.study import STUDY_NAME, Sweep, parse_objectives

    if request.report and Path(request.report).exists() and not Path(request.report).is_dir():
        raise ConfigError(f"--report {request.report}: is a file, not a folder")
    for flag, value, ok, rule in (("--n-trials", request.n_trials, request.n_trials >= 0, ">= 0"),
                                  ("--heartbeat", request.heartbeat, request.heartbeat >= 0, ">= 0"),
                                  ("--timeout", request.timeout, request.timeout is None or request.timeout > 0,
                                   "> 0")):
        if not ok:
            raise ConfigError(f"{flag} must be {rule}, got {value}")
    if request.workers is not None and request.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {request.workers}")
    check_confirm(request.confirm_top, request.confirm_seeds)
    fixed = check_fixed(request.fixed)
    space_path = request.space or str(default_space())
    space = load_space(space_path)
    check_space(parse_space(space, f"--space {space_path}"), fixed, f"--space {space_path}")
    name = request.study_name or f"{make_config(fixed).data_kind}_sweep"
    if not STUDY_NAME.match(name):
        raise ConfigError(f"--study-name {name!r}: use letters, digits, '_', '-', '.' (it names a folder)")
    sweep = Sweep(study_name=name, storage=storage_url(request.storage, name), fixed=fixed, space=space,
                  n_trials=request.n_trials, timeout=request.timeout, sampler=request.sampler,
                  pruner=request.pruner, heartbeat=request.heartbeat,
                  allow_changed_settings=request.allow_changed_settings,
                  objectives=parse_objectives(request.objectives))
    make_sampler(sweep.sampler, 0)  # a missing sampler dependency fails here, once
    return sweep


def check_confirm(top: int, seeds: int) -> None:
    """--confirm-top K >= 0 and, when confirming, --confirm-seeds N >= 2 (an interval needs two values) and scipy."""
    if top < 0:
        raise ConfigError(f"--confirm-top must be >= 0, got {top}")
    if top and seeds < 2:
        raise ConfigError(f"--confirm-seeds must be >= 2 (a confidence interval needs two seeds), got {seeds}")
    if top:
        try:
            import scipy.stats  # noqa: F401  (the t quantiles and Welch's test)
        except ImportError:
            raise ConfigError("--confirm-top needs scipy for its intervals and test: pip install scipy") from None


def check_outputs(sweep: Any, report_dir: Optional[str]) -> None:
    """Every place the sweep writes, before the first trial: one error line, nothing trained, nothing created.

    The storage file's folder, <logdir>/<study> (trials, refits) and its report/, and --report; and the study
    folder must not belong to another storage's study of the same name."""
    from lit_regularize.sweeps.storage import local_file
    from lit_regularize.writable import check_writable

    db = local_file(sweep.storage)
    if db is not None:
        check_writable(db.parent, "--storage: the folder of the database")
    check_writable(sweep.folder, "--logdir: the study folder")
    check_writable(sweep.folder / "report", "--logdir: the report folder")
    if report_dir:
        check_writable(report_dir, "--report")
    sweep.check_folder()


def check_refit(study: Any, mode: Optional[str], confirm_top: int = 0) -> None:
    """--refit-best and --confirm-top need a complete trial: one error line (the counts of the others) instead of a
    silent skip."""
    from lit_regularize.sweeps.study import best_trial, state_counts

    wanted = [f for f, on in (("--refit-best", mode), ("--confirm-top", confirm_top)) if on]
    if wanted and best_trial(study) is None:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(state_counts(study).items())) or "no trials"
        what = "refit" if wanted[0] == "--refit-best" else "confirm"
        raise ConfigError(f"{wanted[0]}: study {study.study_name} has no complete trial to {what} ({counts})")


def confirm(study: Any, top: int, seeds: int, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """--confirm-top K --confirm-seeds N: re-train the K best trials with N new seeds each, print the ranking."""
    from lit_regularize.sweeps import confirm as confirming
    from lit_regularize.sweeps.study import is_multi

    chosen = confirming.candidates(study, top)
    pool = "Pareto-front trials of lowest val/loss" if is_multi(study) else "best complete trials"
    short = f" (the study has {len(chosen)})" if len(chosen) < top else ""
    recorded = study.user_attrs.get(confirming.RUNS) or {}
    kept = sum(f"{t.number}/{s}" in recorded for t in chosen for s in confirming.new_seeds(int(t.user_attrs["seed"]),
                                                                                          seeds))
    note = f"; {kept} of {len(chosen) * seeds} runs recorded earlier are kept" if kept else ""
    echo(f"confirming the {top} {pool}{short} with {seeds} new seeds each (validation only{note})")
    r = confirming.confirm(study, top, seeds, echo)
    for row in r["rows"]:
        note = f", diverged on {row['diverged']} of {len(row['values'])} seeds" if row["diverged"] else ""
        echo(f"  trial {row['trial']:4d}: val/loss {confirming.shown(row)} (95 % CI, {row['n']} new seeds{note}); "
             f"one seed {row['one_seed']:.4f}")
    same = r["winner"] == r["one_seed_winner"]
    echo(f"confirmed winner: trial {r['winner']} (" + ("also the one-seed winner" if same else
                                                        f"the one-seed winner was trial {r['one_seed_winner']}")
         + f"). {r['sentence']}")
    return r


def refit_choice(study: Any) -> tuple[Any, str]:
    """The trial --refit-best refits and why: the confirmed winner when the study has a current confirmation, else
    the best trial (multi-objective: the Pareto front's lowest-val/loss trial)."""
    from lit_regularize.sweeps.confirm import RESULT, confirmed_winner
    from lit_regularize.sweeps.study import best_trial, is_multi

    winner = confirmed_winner(study)
    if winner is not None:
        r = study.user_attrs[RESULT]
        return winner, f"the confirmed winner: {r['seeds']} new seeds each for the top {r['top']} trials"
    why = ("the Pareto front's lowest-val/loss trial: a multi-objective study refits and confirms by val/loss"
           if is_multi(study) else "")
    if study.user_attrs.get(RESULT):
        why = "; ".join(([why] if why else []) + ["the best one-seed trial: the study's confirmation predates its "
                                                  "present top trials (run --confirm-top again)"])
    return best_trial(study), why


def refit(study: Any, mode: str, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """--refit-best: retrain the confirmed winner (or the best trial) and test it: a look at the test set, counted."""
    from lit_regularize.sweeps.study import ordinal, refit_best
    from lit_regularize.tables import fmt

    trial, why = refit_choice(study)
    r = refit_best(study, mode, trial, why)
    where = ("on its training + validation examples" if r["mode"] == "all" else "on its training examples")
    echo(f"refit of trial {r['trial']} {where} for {r['epochs']} epochs" + (f" ({why})" if why else ""))
    if r["mode"] != "all":
        echo(f"  val/loss {fmt(r['val_loss'])} (trial {fmt(r['trial_val_loss'])})")
    scores = f"test acc {fmt(r['test_acc'])}  test loss {fmt(r['test_loss'])}"
    if r["look"] == 1:
        echo(f"final untouched test estimate: {scores}  ({r['weights']} weights; the only test-set evaluation of "
             "this study)")
    else:
        echo(f"test estimate, {ordinal(r['look'])} look at the test set: {scores}  ({r['weights']} weights; "
             f"this study tested {r['look']} times: no longer untouched, and choosing between looks would tune "
             "on the test set)")
    echo(f"refit run:  {r['run_dir']}")
    return r


def run_sweep(request: SweepRequest, echo: Callable[[str], None] = print) -> SweepOutcome:
    """What `lit-regularize sweep` does: trials until the study has request.n_trials finished ones, the
    confirmation, the refit, the report; interrupted: the study keeps its finished trials and confirmation runs
    (code 130)."""
    sweep = make_sweep(request)

    from lit_regularize.errors import RunInterrupted
    from lit_regularize.run import quiet_lightning
    from lit_regularize.sweeps import report, workers
    from lit_regularize.sweeps.study import best_trial, counted, objectives_of, quiet_optuna

    quiet_lightning()
    quiet_optuna()
    if sweep.n_trials == 0 and not sweep.exists():
        raise ConfigError(f"--study-name {sweep.study_name}: no such study in {sweep.storage} (--n-trials 0 only "
                          "reports or refits an existing study)")
    gpus = workers.visible_gpus(request.gpus)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        where = workers.placements(request.workers or max(1, len(gpus)), gpus, workers.usable_cpus())
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if sweep.n_trials and sweep.n_trials > 0:
        check_outputs(sweep, request.report)  # before the storage file or any folder exists
        check_data(sweep.fixed)
    study = sweep.open()
    if sweep.n_trials == 0:  # only a report / refit: the study's own settings, whatever flags were given
        sweep = dataclasses.replace(sweep, fixed=study.user_attrs.get("fixed", sweep.fixed),
                                    space=study.user_attrs.get("space", sweep.space),
                                    objectives=objectives_of(study))
        check_outputs(sweep, request.report)  # its own logdir
        if request.confirm_top:  # it trains: a missing data file is one line before any run folder
            check_data(sweep.fixed)
    else:
        sweep.record_or_check(study)
    if counted(study) >= sweep.n_trials:
        # no trial will run: a refit or confirmation without a complete trial is known now
        check_refit(study, request.refit_best, request.confirm_top)
    elif sweep.multi and request.pruner != "none":
        echo(f"pruning is off: Optuna cannot prune multi-objective studies (--objectives "
             f"{','.join(sweep.objectives)}), so every trial runs to its last epoch or early stop")
    sweep.mark_folder()
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
        return SweepOutcome(study, EXIT_INTERRUPTED)
    workers.reap_dead_workers(study)
    echo(report.final_block(study, sweep.n_trials, (time.perf_counter() - t0) / 60, sweep.storage))
    if code == 0 and counted(study) < sweep.n_trials and sweep.timeout is None:
        print(f"study {sweep.study_name} has {counted(study)} of {sweep.n_trials} trials: a worker stopped early "
              "(see above); re-run to continue", file=sys.stderr)
        code = 1
    refitted = None
    try:
        if request.confirm_top and best_trial(study) is not None:
            confirm(study, request.confirm_top, request.confirm_seeds, echo)
    except (KeyboardInterrupt, RunInterrupted):
        print(f"interrupted: study {sweep.study_name} keeps its finished confirmation runs; re-run the same "
              "command to resume", file=sys.stderr)
        return SweepOutcome(study, EXIT_INTERRUPTED)
    if request.refit_best and best_trial(study) is not None:
        refitted = refit(study, request.refit_best, echo)
    for out in [sweep.folder / "report"] + ([Path(request.report)] if request.report else []):
        files = report.write_report(study, out, sweep.space, sweep.fixed, sweep.storage)
        echo(f"report:     {(out / 'report.md').resolve()} ({len(files)} files)")  # absolute, as the run paths
    for note in report.study_warnings(study, sweep.space, sweep.base.max_epochs):
        print(f"warning: {note}", file=sys.stderr)
    echo(f"dashboard:  {report.dashboard_hint(sweep.storage)}")
    # the trials that ran left none complete: the report is written, then this
    check_refit(study, request.refit_best, request.confirm_top)
    return SweepOutcome(study, code, refitted)


__all__ = ["SweepRequest", "SweepOutcome", "run_sweep", "make_sweep", "check_fixed", "check_data", "check_outputs",
           "check_confirm", "check_refit", "confirm", "refit_choice", "refit"]
