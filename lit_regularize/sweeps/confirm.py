"""Confirm a study's winner (--confirm-top K --confirm-seeds N): re-train the K best complete trials with N new
seeds each, validation only, and rank them by the mean of the new seeds' best val/loss.

A study's best one-seed value is the lowest of many noisy draws, so it is biased low (the winner's curse); the new
seeds are not, which is why the confirmed mean leaves the trial's own value out. Each trial gets mean ± 95 % CI
(Student t, N - 1 degrees of freedom) and the winner a plain sentence: is it distinguishable from the runner-up
(Welch's t-test at 5 %)? Every finished run is recorded in the study at once (user attr 'confirmations'), so a
re-run does not redo it; the result ('confirm') is what the report shows and what --refit-best refits.
Runs live under <logdir>/<study>/confirm_trial_NNNN/seed_S/. No run sees the test set.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial

from lit_regularize.config import SEED_MAX, Config, make_config
from lit_regularize.errors import UserError
from lit_regularize.sweeps.space import parse_space
from lit_regularize.sweeps.study import METRIC, is_multi, n_params, ranked, val_loss
from lit_regularize.tables import fmt

RUNS = "confirmations"  # study user attr: "trial/seed" -> that run's record
RESULT = "confirm"  # study user attr: the latest confirmation (candidates, per-trial statistics, winner, verdict)
SEED_STEP = 1000
ALPHA = 0.05
LEVEL = 0.95


def new_seeds(seed: int, n: int) -> list[int]:
    """N seeds for re-training a trial of seed `seed`: seed + 1000 * (i + 1), deterministic, never `seed` itself."""
    return [(seed + SEED_STEP * (i + 1)) % (SEED_MAX + 1) for i in range(n)]


def candidates(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The K complete trials of lowest val/loss (multi-objective: the Pareto front's K of lowest val/loss)."""
    return ranked(study)[:top]


def interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, Optional[float]]:
    """Mean and the half-width of its t-based confidence interval (None with fewer than two values)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    half = float(stats.t.ppf((1 + level) / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, half


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p of Welch's t-test; None when it is undefined (fewer than two values, or no spread at all)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


# -- running -----------------------------------------------------------------------------------------------------

def confirm_config(study: optuna.Study, trial: FrozenTrial, seed: int) -> Config:
    """The trial's own settings with a new seed, logging to <study>/confirm_trial_NNNN/seed_S."""
    return make_config(trial.user_attrs["config"], source=f"trial {trial.number}").replace(
        seed=seed, name=f"{study.study_name}/confirm_trial_{trial.number:04d}/seed_{seed}")


def _finite(v: Optional[float]) -> Optional[float]:
    return float(v) if v is not None and math.isfinite(v) else None


def run_one(cfg: Config, searched: Sequence[str]) -> dict[str, Any]:
    """One confirmation run (k-fold: every fold, the mean-curve rule as in the trials); validation only."""
    from lit_regularize.run import run

    t0 = time.perf_counter()

    def fit(c: Config) -> Any:
        return run(c, evaluate_test=False, hparam_keys=searched, save_last=False)

    if cfg.kfold >= 2:
        from lit_regularize.kfold import evaluate_folds, fold_configs

        try:
            result = evaluate_folds(fold_configs(cfg, cfg.run_name), run_fold=fit)
            value, epoch = _finite(result.best_mean_val_loss), result.chosen_epoch
        except UserError:  # the mean curve was never finite: this seed diverged
            value, epoch = None, None
        run_dir, epochs = Path(cfg.logdir) / cfg.run_name, cfg.max_epochs
    else:
        s = fit(cfg)
        value, epoch, run_dir, epochs = _finite(s.best_val_loss), s.best_epoch, Path(s.run_dir), s.epochs_run
    return {"val_loss": value, "best_epoch": epoch, "epochs_run": epochs, "run_dir": str(run_dir.resolve()),
            "seconds": time.perf_counter() - t0}


def confirm(study: optuna.Study, top: int, n_seeds: int, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Re-train the K best trials with N new seeds each (finished runs recorded in the study are not re-run),
    record and return the confirmation (see `summarize`)."""
    chosen = candidates(study, top)
    noted = study.user_attrs.get("space")
    searched = [p.name for p in parse_space(noted) if p.searched] if noted else []
    for t in chosen:
        for seed in new_seeds(int(t.user_attrs["seed"]), n_seeds):
            key = f"{t.number}/{seed}"
            if key in (study.user_attrs.get(RUNS) or {}):
                continue  # finished in an earlier session
            r = {"trial": t.number, "seed": seed, **run_one(confirm_config(study, t, seed), searched)}
            # recorded at once (merged with what other processes recorded): an interruption keeps finished runs
            study.set_user_attr(RUNS, {**(study.user_attrs.get(RUNS) or {}), key: r})
            echo(f"confirm trial {t.number:4d} seed {seed}: best {METRIC} {fmt(r['val_loss'])}  best epoch "
                 f"{fmt(r['best_epoch'])}  epochs {fmt(r['epochs_run'])}  {r['seconds']:.1f} s")
    result = summarize(study, chosen, n_seeds, study.user_attrs.get(RUNS) or {}, asked=top)
    study.set_user_attr(RESULT, result)
    return result


# -- summarizing ---------------------------------------------------------------------------------------------------

def trial_row(t: FrozenTrial, seeds: Sequence[int], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One confirmed trial: its seeds' values, their mean ± CI, how many diverged, its one-seed value."""
    recs = [runs[f"{t.number}/{s}"] for s in seeds]
    finite = [r["val_loss"] for r in recs if r["val_loss"] is not None]
    mean, half = interval(finite) if finite else (None, None)
    return {"trial": t.number, "one_seed": val_loss(t), "n_params": n_params(t), "seeds": list(seeds),
            "values": [r["val_loss"] for r in recs], "mean": mean, "ci": half, "n": len(finite),
            "diverged": len(recs) - len(finite), "run_dirs": [r["run_dir"] for r in recs]}


def summarize(study: optuna.Study, chosen: Sequence[FrozenTrial], n_seeds: int,
              runs: Mapping[str, Mapping[str, Any]], asked: Optional[int] = None) -> dict[str, Any]:
    """Rank the confirmed trials by their mean (a trial that diverged on any seed ranks last) and compare the
    winner with the runner-up. `asked`: the K asked for (the study may have had fewer complete trials)."""
    rows = [trial_row(t, new_seeds(int(t.user_attrs["seed"]), n_seeds), runs) for t in chosen]
    rows.sort(key=lambda r: (r["diverged"] > 0, math.inf if r["mean"] is None else r["mean"], r["trial"]))
    winner, runner = rows[0], (rows[1] if len(rows) > 1 else None)
    p = welch_p(_values(winner), _values(runner)) if runner else None
    return {"top": asked or len(chosen), "seeds": n_seeds, "level": LEVEL, "alpha": ALPHA,
            "multi": is_multi(study), "candidates": [t.number for t in chosen], "rows": rows,
            "winner": winner["trial"], "one_seed_winner": chosen[0].number,
            "runner_up": runner["trial"] if runner else None, "p_value": p,
            "distinguishable": _distinguishable(winner, runner, p), "sentence": verdict(winner, runner, p)}


def _values(row: Optional[Mapping[str, Any]]) -> list[float]:
    return [v for v in (row or {}).get("values", []) if v is not None]


def _distinguishable(winner: Mapping[str, Any], runner: Optional[Mapping[str, Any]],
                     p: Optional[float]) -> Optional[bool]:
    """Welch's test at ALPHA; without a p (no spread): whether the intervals are disjoint; None: nothing to compare."""
    if runner is None or winner["mean"] is None:
        return None
    if runner["diverged"] and not winner["diverged"]:
        return True  # the runner-up diverged on a seed: the winner is the only safe choice
    if p is not None:
        return p < ALPHA
    if winner["ci"] is None or runner["ci"] is None or runner["mean"] is None:
        return None
    return winner["mean"] + winner["ci"] < runner["mean"] - runner["ci"]


def shown(row: Mapping[str, Any]) -> str:
    """'0.2841 ± 0.0031' (mean ± 95 % CI half-width), '0.2841' with one seed, '–' without a finite one."""
    if row["mean"] is None:
        return fmt(None)
    return f"{row['mean']:.4f}" + (f" ± {row['ci']:.4f}" if row["ci"] is not None else "")


def verdict(winner: Mapping[str, Any], runner: Optional[Mapping[str, Any]], p: Optional[float]) -> str:
    """One plain sentence: is the confirmed winner distinguishable from the runner-up?"""
    me = f"Trial {winner['trial']} ({METRIC} {shown(winner)} over {winner['n']} new seeds)"
    if winner["mean"] is None:
        return f"No confirmed trial had a finite {METRIC} on every new seed: there is no confirmed winner."
    if runner is None:
        return f"{me} is the only confirmed trial: there is no runner-up to compare it with."
    other = f"the runner-up, trial {runner['trial']} ({shown(runner)})"
    if runner["diverged"] and not winner["diverged"]:
        return f"{me} beats {other}, which diverged on {runner['diverged']} of {len(runner['values'])} new seeds."
    d = _distinguishable(winner, runner, p)
    test = f"Welch's t-test p = {p:.2g}" if p is not None else "their 95 % intervals"
    if d:
        return f"{me} is distinguishable from {other}: {test}" + (f" < {ALPHA:g}." if p is not None else
                                                                    " do not overlap.")
    return (f"{me} is not distinguishable from {other}: {test}" + (f" ≥ {ALPHA:g}" if p is not None else " overlap")
            + "; on this evidence either is as good a choice.")


def current(study: optuna.Study, result: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether a recorded confirmation is about the study's present top trials (trials added since may have
    changed them)."""
    result = result if result is not None else study.user_attrs.get(RESULT)
    return bool(result) and result["candidates"] == [t.number for t in candidates(study, result["top"])]


def confirmed_winner(study: optuna.Study) -> Optional[FrozenTrial]:
    """The confirmed winner when the study has a current confirmation with a finite winner, else None."""
    result = study.user_attrs.get(RESULT)
    if not result or not current(study, result) or result["rows"][0]["mean"] is None:
        return None
    return study.get_trials(deepcopy=False)[result["winner"]]


__all__ = ["RUNS", "RESULT", "new_seeds", "candidates", "interval", "welch_p", "confirm_config", "run_one", "confirm",
           "summarize", "trial_row", "verdict", "shown", "current", "confirmed_winner"]
