"""A study and what it was started with: the `Sweep` every worker gets, opening / resuming with checks,
counting finished trials, and the refit of the best trial (the only place a sweep touches the test set)."""
from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from lit_regularize.config import FIELDS, Config, flag, harmless, make_config
from lit_regularize.errors import ConfigError
from lit_regularize.files import read_json, write_json
from lit_regularize.sweeps.space import parse_space, space_difference
from lit_regularize.sweeps.storage import local_file, make_pruner, make_sampler, open_storage, shown_url

METRIC = "val/loss"
# --objectives: what a study minimizes. val/loss always comes first (best_trial, refit and confirmation rank by it);
# params (the model's parameter count, fixed by its settings before training) makes capacity a cost.
OBJECTIVES = (METRIC, "params")
# --n-trials counts finished trials; failed ones do not count because they are retried
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# <logdir>/<study>/study.json: the storage whose study owns the folder's trial_*, refit_* and report/
STUDY_MARK = "study.json"


def quiet_optuna() -> None:
    """Optuna at WARNING (no 'Using an existing study' / 'Trial n finished' lines), no experimental warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("optuna.study._optimize").addFilter(_NoInterruptTraceback())


class _NoInterruptTraceback(logging.Filter):
    """Ctrl-C is no bug: Optuna's two 'Trial N failed ...' warnings for an interrupted trial are dropped (the
    sweep's own line says the trial is queued again; the run's 'resume with --resume' hint does not apply)."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        words = record.getMessage().split()
        number = words[1] if len(words) > 1 and words[0] == "Trial" else None
        if record.exc_info and type(record.exc_info[1]).__name__ in ("KeyboardInterrupt", "RunInterrupted"):
            self.interrupted.add(number)
            return False
        return not (number in self.interrupted and "failed with value" in record.getMessage())


@dataclasses.dataclass
class Sweep:
    """Everything a worker needs to join a study (JSON-serializable, passed to worker processes)."""

    study_name: str
    storage: str
    fixed: dict[str, Any]  # Config overrides (YAML + flags) shared by every trial
    space: dict[str, Any]  # raw search-space mapping
    n_trials: int = 20
    timeout: Optional[float] = None
    sampler: str = "tpe"
    pruner: str = "median"
    heartbeat: int = 10
    allow_changed_settings: bool = False
    objectives: list[str] = dataclasses.field(default_factory=lambda: [METRIC])

    @property
    def multi(self) -> bool:
        """Whether the study has several objectives (val/loss and params): no pruning, a Pareto front."""
        return len(self.objectives) > 1

    @property
    def heartbeats(self) -> bool:
        """Whether stale trials are detected (RDB storages with --heartbeat > 0; not journal files)."""
        return bool(self.heartbeat) and not self.storage.startswith("journal:")

    @property
    def base(self) -> Config:
        """The fixed settings as a Config (trials add their params on top)."""
        return make_config(self.fixed)

    @property
    def n_folds(self) -> int:
        """Runs per trial: K x repeats with --kfold, else 1."""
        b = self.base
        return b.kfold * b.kfold_repeats if b.kfold >= 2 else 1

    def searched(self) -> list[str]:
        """Names of the searched parameters."""
        return [p.name for p in parse_space(self.space) if p.searched]

    @property
    def folder(self) -> Path:
        """<logdir>/<study>: the trials' run folders, the refits and the report."""
        return Path(self.base.logdir) / self.study_name

    def folder_owner(self) -> Optional[str]:
        """The storage (password masked) recorded in the study folder, None if none is (or it is unreadable)."""
        mark = self.folder / STUDY_MARK
        try:
            owner = read_json(mark).get("storage") if mark.is_file() else None
        except (OSError, ValueError, AttributeError):
            return None  # damaged: mark_folder records it again
        return owner if isinstance(owner, str) else None

    def check_folder(self) -> None:
        """Refuse a study folder that another storage's study of the same name already writes in.

        Two storages with one --study-name and --logdir would mix their trial_* folders and overwrite each other's
        report/: the folder records its storage (STUDY_MARK) when its study first runs."""
        owner = self.folder_owner()
        if owner is not None and owner != shown_url(self.storage):
            raise ConfigError(f"--study-name {self.study_name}: {self.folder} holds the runs of study "
                              f"{self.study_name} in storage {owner}, not {shown_url(self.storage)}; use another "
                              f"--study-name or --logdir (or delete {self.folder / STUDY_MARK} if that storage "
                              "moved here)")

    def mark_folder(self) -> None:
        """Record the storage that owns the study folder (check_folder refuses any other)."""
        if self.folder_owner() is None:
            write_json(self.folder / STUDY_MARK, {"study": self.study_name, "storage": shown_url(self.storage)})

    def exists(self) -> bool:
        """Whether the study is already in its storage (never creates a storage file)."""
        path = local_file(self.storage)
        if path is not None and not path.exists():
            return False
        storage = open_storage(self.storage, heartbeat=0)
        return self.study_name in optuna.get_all_study_names(storage)

    def open(self, worker: int = 0) -> optuna.Study:
        """Create or load (resume) the study, with a sampler seeded per worker and per restart."""
        quiet_optuna()
        base = self.base
        storage = open_storage(self.storage, self.heartbeat)
        # Optuna cannot prune multi-objective studies (Trial.report raises): their trials run every epoch
        pruner = make_pruner("none" if self.multi else self.pruner, base.max_epochs, self.n_folds)
        study = optuna.create_study(study_name=self.study_name, storage=storage,
                                    directions=["minimize"] * len(self.objectives), load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler(), pruner=pruner)
        # Different seeds per worker and per restart: the same seed would re-propose the same first points.
        study.sampler = make_sampler(self.sampler, (base.seed + 7919 * worker + len(study.trials)) % 2 ** 32)
        return study

    def load(self) -> optuna.Study:
        """An existing study (ConfigError when it does not exist), for reports."""
        if not self.exists():
            raise ConfigError(f"--study-name {self.study_name}: no such study in {self.storage}; "
                              "nothing to report (give --n-trials to start it)")
        return self.open()

    def record_or_check(self, study: optuna.Study) -> None:
        """A new study records its space and fixed settings; a resumed one must have the same (before any trial).

        A different space is an error naming the first differing parameter; different fixed settings (other than
        HARMLESS ones) are an error unless --allow-changed-settings."""
        noted_space, noted_fixed = study.user_attrs.get("space"), study.user_attrs.get("fixed")
        noted = objectives_of(study)
        if noted_space is not None and noted != list(self.objectives):
            # load_if_exists ignores the directions asked for: without this the trials would return the wrong count
            raise ConfigError(f"--objectives: study {self.study_name} was started with --objectives "
                              f"{','.join(noted)}, not {','.join(self.objectives)}; use those or a new --study-name")
        if noted_space is None:
            study.set_metric_names(list(self.objectives))
            study.set_user_attr("space", self.space)
            study.set_user_attr("fixed", self.fixed)
            return
        diff = space_difference(noted_space, self.space)
        if diff:
            raise ConfigError(f"--space: study {self.study_name} was started with another search space ({diff}); "
                              "use its space or a new --study-name")
        changed = changed_settings(noted_fixed or {}, self.fixed)
        if changed and not self.allow_changed_settings:
            shown = ", ".join(f"{flag(k)} {old!r} -> {new!r}" for k, old, new in changed)
            raise ConfigError(f"study {self.study_name} was started with other fixed settings ({shown}); its trials "
                              "would not be comparable: use a new --study-name, or --allow-changed-settings")
        if changed:  # allowed: recorded, so the report says which trials ran under which settings
            history = study.user_attrs.get("settings_changes", [])
            history.append({"from_trial": len(study.get_trials(deepcopy=False)),
                            "changes": [[k, old, new] for k, old, new in changed]})
            study.set_user_attr("settings_changes", history)
            study.set_user_attr("fixed", self.fixed)


def parse_objectives(text: str | Sequence[str]) -> list[str]:
    """--objectives val/loss[,params] in the canonical order (val/loss first); one error line otherwise."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or METRIC not in names or len(set(names)) != len(names):
        why = (f"unknown {unknown[0]!r}" if unknown else f"{METRIC} is required" if METRIC not in names
               else "an objective is listed twice")
        raise ConfigError(f"--objectives {','.join(names) or repr(text)}: {why} (choose {METRIC} or "
                          f"{METRIC},params)")
    return [n for n in OBJECTIVES if n in names]


def objectives_of(study: optuna.Study) -> list[str]:
    """The objectives a study was started with (its metric names; val/loss alone for unnamed single ones)."""
    return list(study.metric_names or [METRIC] * len(study.directions))


def is_multi(study: optuna.Study) -> bool:
    """Whether a study minimizes several objectives (val/loss and params)."""
    return len(study.directions) > 1


def val_loss(t: FrozenTrial) -> Optional[float]:
    """A trial's val/loss objective (the first of a multi-objective trial's values); None if it has none."""
    return t.values[0] if t.values else None


def n_params(t: FrozenTrial) -> Optional[int]:
    """The model's parameter count a trial recorded before training (None for trials older than the record)."""
    v = t.user_attrs.get("n_params")
    return int(v) if v is not None else None


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated complete trials of a multi-objective study (Optuna's best_trials), by val/loss."""
    return sorted(study.best_trials, key=lambda t: (t.values, t.number)) if is_multi(study) else []


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, old, new) of the resolved fixed settings that differ, harmless ones left out."""
    a, b = make_config(old).to_dict(), make_config(new).to_dict()
    keys = list(dict.fromkeys([*a, *b]))  # a run records only its own data kind's settings
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k) and k not in harmless() and k != "name"]


def counted(study: optuna.Study) -> int:
    """Finished trials that count towards --n-trials (complete + pruned)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials by val/loss (ties: fewer parameters, then the earlier trial).

    Multi-objective: the Pareto front's trials only, so the best is the front's lowest-val/loss trial (the
    lowest val/loss of the study; a trial that ties it with more parameters is dominated)."""
    pool = pareto_front(study) if is_multi(study) else study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in pool if val_loss(t) is not None]
    return sorted(done, key=lambda t: (val_loss(t), n_params(t) or 0, t.number))


def best_trial(study: optuna.Study) -> Optional[FrozenTrial]:
    """The complete trial of lowest val/loss (multi-objective: the front's lowest-val/loss trial), or None."""
    done = ranked(study)
    return done[0] if done else None


def refit_best(study: optuna.Study, mode: str = "holdout", trial: Optional[FrozenTrial] = None,
               why: str = "") -> dict[str, Any]:
    """Retrain the best trial's (or `trial`'s: the confirmed winner) config with its seed and test it: a look at the
    test set, counted (the first is the untouched estimate; looks_at_test_set lists them all).

    holdout: the same training examples and epochs (early stopping on the same validation set), best weights
    tested. all: `kfold.refit_config`: the trial's training and validation examples together (k-fold: the whole
    pool), for the trial's best (k-fold: chosen) epoch count, last weights tested. Recorded in the study's
    user attrs as 'refit' (the latest, with its 'look' number and `why` this trial) and 'refits' (every look) so
    the report shows them."""
    from lit_regularize.kfold import refit_config
    from lit_regularize.run import run

    best = trial or best_trial(study)
    if best is None:
        raise ConfigError(f"--refit-best: study {study.study_name} has no complete trial")
    cfg = make_config(best.user_attrs["config"], source=f"trial {best.number}")
    if "histogram_every" not in (study.user_attrs.get("fixed") or {}):
        # the refit is the study's final model, a fit like any other: fit's histogram default, not the trials' 0
        cfg = cfg.replace(histogram_every=FIELDS["histogram_every"].default)
    name = f"{study.study_name}/refit_trial_{best.number:04d}"
    epochs = int(best.user_attrs["best_epoch"])
    # the refit's HParams row has the trials' columns: the experiment's settings plus what the study searched
    noted = study.user_attrs.get("space")
    searched = [p.name for p in parse_space(noted) if p.searched] if noted else list(best.params)
    if mode == "all" or cfg.kfold >= 2:
        summary = run(refit_config(cfg, epochs, name), hparam_keys=searched)
        which = "last"
    else:
        summary = run(cfg.replace(name=name), hparam_keys=searched)
        which = "best"
    test = (summary.test or {})[which]
    earlier = looks_at_test_set(study)
    result = {"trial": best.number, "mode": mode, "epochs": summary.epochs_run, "run_dir": str(summary.run_dir),
              "test_loss": test["loss"], "test_acc": test["acc"], "weights": which,
              "val_loss": summary.best_val_loss, "trial_val_loss": val_loss(best), "look": len(earlier) + 1,
              "chosen": why}
    study.set_user_attr("refits", earlier + [result])
    study.set_user_attr("refit", result)
    return result


def looks_at_test_set(study: optuna.Study) -> list[dict[str, Any]]:
    """Every refit that tested on the test set so far, in order ('look' 1, 2, …); the study's test-set looks."""
    looks = study.user_attrs.get("refits")
    if looks is None:  # a study refitted before looks were counted recorded only its last refit
        looks = [{**study.user_attrs["refit"], "look": 1}] if study.user_attrs.get("refit") else []
    return list(looks)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


__all__ = ["Sweep", "METRIC", "OBJECTIVES", "COUNTED", "STUDY_NAME", "STUDY_MARK", "quiet_optuna", "changed_settings",
           "parse_objectives", "objectives_of", "is_multi", "val_loss", "n_params", "pareto_front", "ranked",
           "counted", "state_counts", "best_trial", "refit_best", "looks_at_test_set", "ordinal"]
