"""What a study shows people: one line per finished trial, the leaderboard, figures, warnings and report.md.

Validation numbers only, except the refit of the best trial (--refit-best), the study's look at the test set,
shown as such and counted: a second refit is shown as the 2nd look, no longer an untouched estimate. Tables go
through `lit_regularize.tables`; figures use matplotlib's Agg canvas.
"""
from __future__ import annotations

import importlib.util
import io
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from lit_regularize.config import flag, make_config, minimal_overrides
from lit_regularize.errors import ConfigError
from lit_regularize.regularizers import presets as regularizer_presets, search_entries, strengths as regularizer_strengths
from lit_regularize.sweeps.space import edge_of_range, parse_space
from lit_regularize.sweeps.storage import shown_url
from lit_regularize.sweeps.study import (COUNTED, METRIC, best_trial, counted, looks_at_test_set, ordinal,
                                        state_counts)
from lit_regularize.tables import csv_text, fmt, markdown, write_text

MIN_TRIALS_FOR_IMPORTANCE = 10
TOP_CURVES = 5
FIGURES = ("landscape.png", "curves.png", "history.png", "importances.png")


# -- per-trial lines ------------------------------------------------------------------------------------------

def _params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={fmt(v, '{:.3g}')}" for k, v in params.items())


def trial_line(t: FrozenTrial) -> str:
    """trial number, state, params, val/loss, best epoch, epochs run, seconds."""
    u = t.user_attrs
    # Optuna stores a pruned trial's last reported value as its value: show it as such
    done = t.state == TrialState.COMPLETE
    value, label = (t.value, METRIC) if done else (_last_value(t), f"last {METRIC}")
    return (f"trial {t.number:4d} {t.state.name:<8s} {_params(t.params)}  {label} {fmt(value)}  best epoch "
            f"{fmt(u.get('best_epoch'))}  epochs {fmt(u.get('epochs_run'))}  {fmt(u.get('seconds'), '{:.1f}')} s")


def print_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback: one line as each trial finishes (flushed: several workers share the terminal)."""
    print(trial_line(trial), flush=True)


def _last_value(t: FrozenTrial) -> Optional[float]:
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None


# -- leaderboard ----------------------------------------------------------------------------------------------

def _best_value(t: FrozenTrial) -> Optional[float]:
    """A complete trial's value; else the lowest val/loss it reported before it stopped."""
    if t.state == TrialState.COMPLETE:
        return t.value
    reported = [v for v in t.intermediate_values.values() if v is not None and math.isfinite(v)]
    return min(reported) if reported else None


def _sort_key(t: FrozenTrial) -> tuple:
    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(t.state, 2)
    value = _best_value(t)
    return rank, value if value is not None else math.inf, t.number


def param_names(study: optuna.Study) -> list[str]:
    """Every param any trial sampled, in first-seen order."""
    return list(dict.fromkeys(p for t in study.get_trials(deepcopy=False) for p in t.params))


def leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: complete ones by val/loss (ranked), then pruned, then the rest. No test metrics."""
    params = param_names(study)
    rows, rank = [], 0
    for t in sorted(study.get_trials(deepcopy=False), key=_sort_key):
        u = t.user_attrs
        rank += t.state == TrialState.COMPLETE
        row: dict[str, Any] = {"rank": rank if t.state == TrialState.COMPLETE else None, "trial": t.number,
                               "state": t.state.name}
        row.update({p: t.params.get(p) for p in params})
        row.update({"val_loss": _best_value(t), "val_acc": u.get("val_acc"), "best_epoch": u.get("best_epoch"),
                    "epochs_run": u.get("epochs_run"), "seconds": u.get("seconds"), "run_dir": u.get("run_dir")})
        rows.append(row)
    return rows


def leaderboard_columns(params: Sequence[str]) -> list[tuple[str, str, str]]:
    """(key, header, format) of the Markdown leaderboard."""
    return ([("rank", "rank", "{:d}"), ("trial", "trial", "{:d}"), ("state", "state", "")]
            + [(p, p, "{:.4g}") for p in params]
            + [("val_loss", "best val/loss", "{:.4f}"), ("val_acc", "val acc", "{:.4f}"),
               ("best_epoch", "best epoch", "{:d}"), ("epochs_run", "epochs run", "{:d}"),
               ("seconds", "seconds", "{:.1f}")])


# -- warnings -------------------------------------------------------------------------------------------------

def study_warnings(study: optuna.Study, space: Mapping[str, Any], max_epochs: int) -> list[str]:
    """Where the answer is not trustworthy: a best epoch at the budget's end, a best value at the edge of its
    range, too few finished trials for importances."""
    out = []
    best = best_trial(study)
    n = counted(study)
    if best is not None:
        if best.user_attrs.get("best_epoch") == max_epochs:
            out.append(f"the best trial ({best.number}) had its best epoch at the last one ({max_epochs}): val/loss "
                       "was still falling; a larger --max-epochs may do better")
        for p in parse_space(space):
            edge = edge_of_range(p, best.params.get(p.name))
            if edge:
                bound = p.low if edge == "low" else p.high
                out.append(f"the best {p.name} ({fmt(best.params[p.name], '{:.4g}')}) is at the {edge} edge of its "
                           f"range ({fmt(bound, '{:.4g}')}): the optimum may lie outside; widen the range")
    else:
        out.append("no trial completed: there is no best setting yet")
    for change in study.user_attrs.get("settings_changes", []):
        shown = ", ".join(f"{flag(k)} {old!r} -> {new!r}" for k, old, new in change["changes"])
        out.append(f"fixed settings changed from trial {change['from_trial']} on ({shown}, "
                   "--allow-changed-settings): trials before and after are not comparable")
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        out.append(f"only {n} finished trial(s): parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} "
                   "to mean much")
    return out


# -- figures --------------------------------------------------------------------------------------------------

def _figure(ncols: int, width: float = 5.0, height: float = 4.2):  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")  # panels, labels and colour bar never overlap
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return write_text_bytes(path, buf.getvalue())


def write_text_bytes(path: Path, data: bytes) -> Path:
    """Write bytes atomically."""
    from lit_regularize.files import atomic_write

    return atomic_write(path, lambda f: f.write(data))


def landscape_figure(study: optuna.Study) -> Any:
    """Best val/loss over hidden (log x) x strength (log y), one panel per regularizer with a strength; every
    finished trial a point (complete: coloured by value; pruned: grey); the best marked; no-reg trials as a
    strip below the strength range."""
    import numpy as np
    from matplotlib import cm, colors
    from matplotlib.ticker import LogFormatter

    trials = [t for t in study.get_trials(deepcopy=False, states=COUNTED) if "config" in t.user_attrs]
    values = [t.value for t in trials if t.state == TrialState.COMPLETE]
    # a linear colour scale: val losses span far less than a decade, where a log bar's labels read 6.05×10⁻¹
    norm = colors.Normalize(min(values or [0]), max(values or [1]) + 1e-12)
    cmap = cm.get_cmap("viridis_r") if hasattr(cm, "get_cmap") else __import__("matplotlib").colormaps["viridis_r"]
    strengths = regularizer_strengths()  # panel (a searched strength) -> the presets that switch it on
    panels = [name for name, regs in strengths.items() if any(t.user_attrs["config"]["reg"] in regs for t in trials)]
    panels = panels or ["l2"]
    fig, axes = _figure(len(panels))
    best = best_trial(study)
    none = [t for t in trials if t.user_attrs["config"]["reg"] == "none"]
    # presets that switch on several searched strengths (l1_l2) are drawn as squares in each of their panels
    combined = {p for p, v in regularizer_presets().items() if len(set(v) & set(strengths)) > 1}
    for ax, name in zip(axes, panels):
        mine = [t for t in trials if t.user_attrs["config"]["reg"] in strengths[name]
                and t.user_attrs["config"][name] > 0]
        ys = [t.user_attrs["config"][name] for t in mine]
        floor = (min(ys) if ys else 1e-3) / 4
        for t in mine:
            c, y = t.user_attrs["config"], t.user_attrs["config"][name]
            marker = "s" if c["reg"] in combined else "o"
            if t.state != TrialState.COMPLETE:
                ax.scatter(c["hidden"], y, marker=marker, facecolors="none", edgecolors="0.6", s=30)
            else:
                ax.scatter(c["hidden"], y, marker=marker, color=cmap(norm(t.value)), s=40, edgecolors="k",
                           linewidths=0.3)
        for t in none:  # the unregularized reference strip
            c = t.user_attrs["config"]
            if t.state != TrialState.COMPLETE:
                ax.scatter(c["hidden"], floor, marker="x", color="0.6", s=30)
            else:
                ax.scatter(c["hidden"], floor, marker="x", color=cmap(norm(t.value)), s=40)
        if none:
            ax.axhspan(floor / 1.8, floor * 1.8, color="0.9", zorder=0)
            ax.text(0.01, 0.02, "x: reg none", transform=ax.transAxes, fontsize=8)
        if best is not None and (best in mine or best in none):
            c = best.user_attrs["config"]
            y = floor if c["reg"] == "none" else c[name]
            ax.scatter(c["hidden"], y, marker="*", s=260, facecolors="none", edgecolors="red", linewidths=1.5,
                       label=f"best: trial {best.number} ({best.value:.4f})")
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
        ax.set_xscale("log")
        # unit counts as plain numbers (not 8×10⁰); minor ticks labelled only where the range is narrow
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
        # a rate such as dropout's is searched on a linear scale; penalties span decades
        linear = not any(search_entries(p).get(name, {}).get("log") for p in strengths[name])
        ax.set_yscale("linear" if linear else "log")
        ax.set_xlabel("hidden units (log)")
        ax.set_ylabel(f"{name} rate" if linear else f"{name} strength (log)")
        squares = sorted(combined & set(strengths[name]))
        ax.set_title(f"reg {name}" + (f" (squares: {', '.join(squares)})" if squares else ""))
        ax.grid(alpha=0.3, which="both")
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array(np.array(values or [0.0]))
    fig.colorbar(sm, ax=axes, label=f"best {METRIC} (lower is better)")
    fig.suptitle(f"{study.study_name}: {len(trials)} finished trials (hollow/grey: pruned)")
    return fig


def curves_figure(study: optuna.Study, top: int = TOP_CURVES) -> Any:
    """Val-loss curves (1-based epochs) of the top trials and of the best unregularized trial."""
    done = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.user_attrs.get("val_curve")), key=lambda t: (t.value, t.number))
    fig, (ax,) = _figure(1, width=7.0)
    for t in done[:top]:
        curve = t.user_attrs["val_curve"]
        ax.plot(range(1, len(curve) + 1), [math.nan if v is None else v for v in curve], marker=".",
                label=f"trial {t.number} ({t.user_attrs['config']['reg']}, {t.value:.4f})")
    none = [t for t in done if t.user_attrs["config"]["reg"] == "none"]
    if none:
        t = none[0]
        curve = t.user_attrs["val_curve"]
        ax.plot(range(1, len(curve) + 1), [math.nan if v is None else v for v in curve], "k--",
                label=f"best unregularized: trial {t.number} ({t.value:.4f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    ax.set_title(f"{study.study_name}: validation curves of the top {min(top, len(done))} trials")
    return fig


def _optuna_figure(kind: str, study: optuna.Study) -> Any:
    from optuna.visualization import matplotlib as mpl_vis

    n = counted(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "history":
            ax = mpl_vis.plot_optimization_history(study, target_name=METRIC)
            title = f"{study.study_name}: {METRIC} per trial ({n} finished trials)"
        else:
            ax = mpl_vis.plot_param_importances(study, target_name=METRIC)
            title = f"{study.study_name}: importance for {METRIC} ({n} finished trials" + (
                f", fewer than {MIN_TRIALS_FOR_IMPORTANCE}: unreliable)" if n < MIN_TRIALS_FOR_IMPORTANCE else ")")
    ax = ax.flat[0] if hasattr(ax, "flat") else ax
    if kind == "history":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers, not 0.25 steps
    for loc in ("left", "center", "right"):  # Optuna titles some plots on the left
        ax.set_title("", loc=loc)
    ax.set_title(title)
    return ax.figure


# -- the report -----------------------------------------------------------------------------------------------

def write_report(study: optuna.Study, out: str | Path, space: Optional[Mapping[str, Any]] = None,
                 fixed: Optional[Mapping[str, Any]] = None, storage: str = "") -> list[Path]:
    """leaderboard.md/.csv, landscape/curves/history/importances PNGs (HTML with plotly) and report.md."""
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--report {out}: is a file, not a folder")
    space = dict(space if space is not None else study.user_attrs.get("space") or {})
    fixed = dict(fixed if fixed is not None else study.user_attrs.get("fixed") or {})
    base = make_config(fixed)
    rows = leaderboard(study)
    params = param_names(study)
    written = [write_text(out / "leaderboard.csv", csv_text(rows, [c[0] for c in leaderboard_columns(params)]
                                                           + ["run_dir"])),
               write_text(out / "leaderboard.md", markdown(leaderboard_columns(params), rows))]
    skipped = {}
    for name, build in (("landscape.png", landscape_figure), ("curves.png", curves_figure),
                        ("history.png", lambda s: _optuna_figure("history", s)),
                        ("importances.png", lambda s: _optuna_figure("importances", s))):
        try:
            fig = build(study)
            written.append(_save(fig, out / name))
        except Exception as e:  # e.g. importances need 2+ complete trials: skip that figure, keep the report
            skipped[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
        finally:
            plt.close("all")
    if importlib.util.find_spec("plotly") is not None:
        for name, plot in (("history.html", optuna.visualization.plot_optimization_history),
                           ("importances.html", optuna.visualization.plot_param_importances)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    page = plot(study, target_name=METRIC).to_html()
                written.append(write_text(out / name, page))
            except Exception as e:
                skipped[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
    notes = study_warnings(study, space, base.max_epochs)
    written.append(write_text(out / "report.md", report_markdown(study, rows, params, space, fixed, notes, skipped,
                                                                 storage, [p.name for p in written])))
    return written


def report_markdown(study: optuna.Study, rows: list[dict[str, Any]], params: Sequence[str],
                    space: Mapping[str, Any], fixed: Mapping[str, Any], notes: Sequence[str],
                    skipped: Mapping[str, str], storage: str, files: Sequence[str]) -> str:
    """report.md: counts, best trial, warnings, the final test estimate (if refit), figures, settings, leaderboard."""
    counts = state_counts(study)
    shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    best = best_trial(study)
    lines = [f"# Study `{study.study_name}`", "",
             f"{counted(study)} finished trials ({shown}); objective: best {METRIC} (lower is better), minimized "
             "over validation data only: no trial saw the test set.", ""]
    if storage:
        lines += [f"Storage: `{shown_url(storage)}`", ""]
    if best is not None:
        u = best.user_attrs
        lines += [f"**Best trial {best.number}**: {METRIC} {fmt(best.value)}, val acc {fmt(u.get('val_acc'))}, "
                  f"best epoch {fmt(u.get('best_epoch'))} of {fmt(u.get('epochs_run'))} run; params "
                  f"`{_params(best.params)}`; run folder `{u.get('run_dir')}`.", ""]
    looks = looks_at_test_set(study)
    refit = looks[-1] if looks else None
    lines += ["## Final untouched test estimate" if len(looks) < 2 else
              f"## Test estimate ({ordinal(len(looks))} look at the test set)", ""]
    if refit:
        what = ("trained on the trial's training and validation examples together" if refit["mode"] == "all"
                else "the same training examples, best-epoch weights")
        lines += [f"Refit of trial {refit['trial']} ({what}, {refit['epochs']} epochs): **test acc "
                  f"{fmt(refit['test_acc'])}**, test loss {fmt(refit['test_loss'])}. {_look_note(looks)} "
                  f"Run folder `{refit['run_dir']}`.", ""]
    else:
        lines += ["None yet: run the sweep again with `--refit-best` (or `--refit-best all`) to test the best "
                  "trial once.", ""]
    lines += ["## Warnings", ""] + ([f"- {n}" for n in notes] or ["- none"]) + [""]
    figures = [f for f in FIGURES if f in files]
    lines += ["## Figures", ""]
    captions = {"landscape.png": "best val/loss over hidden size and regularization strength",
                "curves.png": "validation curves of the top trials and the best unregularized one",
                "history.png": "val/loss per trial and the best so far",
                "importances.png": "parameter importances for val/loss"}
    lines += [f"![{captions[f]}]({f})" for f in figures]
    lines += [f"- {f} skipped: {why}" for f, why in skipped.items()] + [""]
    lines += ["## Fixed settings", "", "```yaml", yaml.safe_dump(minimal_overrides(make_config(fixed)),
                                                                  sort_keys=False).strip() or "{}", "```", ""]
    lines += ["## Search space", "", "```yaml", yaml.safe_dump(dict(space), sort_keys=False).strip(), "```", ""]
    lines += ["## Leaderboard", "", "(also `leaderboard.csv`, full precision; a pruned trial's best val/loss is the "
              "lowest it reported before it was stopped)", "",
              markdown(leaderboard_columns(params), rows)]
    return "\n".join(lines)


def _look_note(looks: Sequence[Mapping[str, Any]]) -> str:
    """What the latest refit's test numbers are worth, given how often the study looked at the test set."""
    if len(looks) < 2:
        return "This is the only time the study touched the test set."
    earlier = "; ".join(f"{ordinal(i + 1)}: trial {r['trial']}, test acc {fmt(r['test_acc'])}"
                        for i, r in enumerate(looks[:-1]))
    return (f"This is the study's {ordinal(len(looks))} look at the test set ({earlier}): the estimate is no longer "
            "untouched, and choosing between looks would tune on the test set.")


def dashboard_hint(url: str) -> str:
    """How to browse the study in optuna-dashboard (the install step only where it is missing)."""
    target = url[len("journal:"):] if url.startswith("journal:") else url
    run = f"optuna-dashboard {shown_url(target)}"
    return run if importlib.util.find_spec("optuna_dashboard") is not None else f"pip install optuna-dashboard && {run}"


def final_block(study: optuna.Study, n_trials: int, minutes: float, storage: str) -> str:
    """Counts, best trial, where things are."""
    n, counts = counted(study), state_counts(study)
    shown = ", ".join(f"{c} {s.lower()}" for s, c in sorted(counts.items()))
    goal = f"/{n_trials}" if n_trials > n else ""
    lines = [f"study {study.study_name}: {n}{goal} finished trials ({shown or 'none'}); this run {minutes:.1f} min; "
             f"storage {shown_url(storage)}"]
    best = best_trial(study)
    if best is None:
        lines.append("no complete trial yet")
    else:
        u = best.user_attrs
        lines.append(f"best trial {best.number}: {METRIC} {best.value:.4f}  val acc {fmt(u.get('val_acc'))}  best "
                     f"epoch {fmt(u.get('best_epoch'))}  params {_params(best.params)}")
        lines.append(f"best run:   {u.get('run_dir')}")
    return "\n".join(lines)


__all__ = ["trial_line", "print_trial", "leaderboard", "leaderboard_columns", "study_warnings", "write_report",
           "landscape_figure", "curves_figure", "dashboard_hint", "final_block", "param_names"]
