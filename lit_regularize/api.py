"""The Python API: what the command line does, from a notebook, with the same checks and one-line errors.

Settings are named as the flags (`max_epochs=5` for --max-epochs 5); a bad one raises the CLI's one-line error as
an exception (`lit_regularize.errors.ConfigError`, `DataError`: both `UserError`). Lightning's banners stay quiet.

    import lit_regularize as lr
    none = lr.fit(data_dir="../shared/data", max_epochs=8)
    drop = lr.fit(reg="dropout", data_dir="../shared/data", max_epochs=8)
    table = lr.compare({"none": {}, "dropout": {"reg": "dropout"}}, seeds=2, data_dir="../shared/data")
    study = lr.sweep(n_trials=8, data_dir="../shared/data", max_epochs=6)
    lr.load(drop.run_dir).predict(["A moving, wonderful film."])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from lit_regularize.config import make_config
from lit_regularize.summary import RunSummary

StudySpec = Union[str, Path, Mapping[str, Mapping[str, Any]]]


def fit(**overrides: Any) -> RunSummary:
    """Train one model (or K folds and a refit with kfold=K) as `lit-regularize fit` does; returns its summary."""
    from lit_regularize.run import quiet_lightning, run

    from lit_regularize.callbacks import epoch_lines

    cfg = make_config(overrides, source=_source("fit", overrides))
    quiet_lightning()
    with epoch_lines(unless_silenced=True):  # one line per epoch as keras' fit prints (epoch_lines(False): none)
        if cfg.kfold >= 2 and cfg.fold is None:
            from lit_regularize.kfold import run_kfold

            return run_kfold(cfg)
        return run(cfg)


@dataclass
class Comparison:
    """A comparison as data: `table` one row per setting (n, and mean, std and 95 % CI over seeds of every number),
    `runs` every run's row, `results` one row per setting and metric against `baseline` (the results.csv rows:
    paired difference, its 95 % CI, p-values, verdict), the figures and files written. Shows as a Markdown table in
    a notebook."""

    table: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    markdown: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    baseline: str = ""

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __getitem__(self, label: str) -> dict[str, Any]:
        """The table row of one setting."""
        for row in self.table:
            if row["run"] == label:
                return row
        raise KeyError(label)

    def result(self, setting: str, metric: str) -> dict[str, Any]:
        """The results row of one setting and metric (e.g. 'l2', 'best_val_loss')."""
        for row in self.results:
            if row["setting"] == setting and row["metric"] == metric:
                return row
        raise KeyError((setting, metric))


def compare(study: StudySpec, seeds: int = 1, out: Union[str, Path] = "compare", rerun: bool = False,
            baseline: Optional[str] = None, **fixed: Any) -> Comparison:
    """Run a comparison study (a shipped name such as 'imdb_penalty', a study YAML, or {label: settings}) with
    `seeds` seeds per setting, as `lit-regularize compare` does; figures and tables are written into `out`.

    Every setting is compared with `baseline` (default: the run named 'none', else the first) over the same seeds.
    `fixed` settings apply to every run (data_dir=..., max_epochs=...). Finished identical runs are reused
    unless rerun=True."""
    from lit_regularize import comparison as comparing
    from lit_regularize.run import quiet_lightning

    quiet_lightning()
    if isinstance(study, Mapping):
        spec = comparing.study_from_members("comparison", {str(k): dict(v) for k, v in study.items()})
    else:
        spec = comparing.load_study(str(study))
    given = dict(fixed)
    if given:
        make_config({**next(iter(spec.members.values())), **given}, source=_source("compare", given))
    result = comparing.compare_study(spec, out, given, seeds, rerun, baseline=baseline)
    return Comparison(table=aggregate(result["rows"]), runs=result["rows"], markdown=result["markdown"],
                      results=result["results"], baseline=result["baseline"],
                      files={**result["figures"], "table_csv": result["table_csv"], "table_md": result["table_md"],
                             "results_csv": result["results_csv"]})


def aggregate(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run label: n (seeds), and per numeric column its mean, sample std and t-based 95 % CI over the
    seeds that have a value (`<key>_n` when fewer than n do; std and CI None for a single value)."""
    from lit_regularize.stats import describe

    out = []
    for label in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == label]
        row: dict[str, Any] = {"run": label, "n": len(mine)}
        for key in dict.fromkeys(k for r in mine for k in r):
            values = [r.get(key) for r in mine]
            numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if key in ("run", "seed", "log_dir") or not numeric or len(numeric) < sum(v is not None for v in values):
                continue  # not a number column (text, or mixed)
            spread = describe(numeric)
            row.update({f"{key}_mean": spread.mean, f"{key}_std": spread.std, f"{key}_ci95_low": spread.low,
                        f"{key}_ci95_high": spread.high})
            if spread.n < len(mine):
                row[f"{key}_n"] = spread.n
        out.append(row)
    return out


def sweep(n_trials: int = 20, study_name: Optional[str] = None, storage: Optional[str] = None, workers: int = 1,
          space: Optional[Union[str, Path]] = None, sampler: str = "tpe", pruner: str = "median",
          timeout: Optional[float] = None, report: Optional[Union[str, Path]] = None,
          refit_best: Optional[str] = None, confirm_top: int = 0, confirm_seeds: int = 3,
          objectives: Union[str, Sequence[str]] = "val/loss", **fixed: Any) -> Any:
    """An Optuna study over fit's runs, as `lit-regularize sweep` does; returns the optuna.Study (its report is
    written to <logdir>/<study>/report/, and to `report` too when given). `fixed` settings apply to every trial.

    confirm_top=K, confirm_seeds=N re-train the K best trials with N new seeds each and record the confirmed winner
    (study.user_attrs["confirm"]); objectives="val/loss,params" makes the parameter count a second objective."""
    from lit_regularize.sweeps.session import SweepRequest, run_sweep

    request = SweepRequest(n_trials=n_trials, study_name=study_name, storage=storage, workers=workers,
                           space=None if space is None else str(space), sampler=sampler, pruner=pruner,
                           timeout=timeout, report=None if report is None else str(report), refit_best=refit_best,
                           confirm_top=confirm_top, confirm_seeds=confirm_seeds, objectives=objectives,
                           fixed=dict(fixed))
    return run_sweep(request, echo=print).study


def load(run_dir: Union[str, Path], last: bool = False, **options: Any) -> Any:
    """A Predictor of a run folder's best (or last) weights: `.predict(inputs)` (see lit_regularize.predict.load)."""
    from lit_regularize.predict import load as load_run

    return load_run(run_dir, last=last, **options)


def _source(what: str, overrides: Mapping[str, Any]) -> str:
    """How errors name where the settings came from."""
    return f"lr.{what}()"


__all__ = ["fit", "compare", "sweep", "load", "Comparison", "aggregate"]
