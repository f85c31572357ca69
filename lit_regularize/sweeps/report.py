"""What a study shows people: one line per finished trial, the leaderboard, figures, warnings and report.md.

Validation numbers only, except the refit of the best trial (--refit-best), the study's look at the test set,
shown as such and counted: a second refit is shown as the 2nd look, no longer an untouched estimate. Tables go
through `lit_regularize.tables`; figures use matplotlib's Agg canvas. Paths in the report are relative to the
report folder (absolute only where no relative path exists), so a copied study folder keeps working links.
"""
from __future__ import annotations

import importlib.util
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from lit_regularize.config import flag, make_config
from lit_regularize.errors import ConfigError
from lit_regularize.regularizers import presets as regularizer_presets, search_entries, strengths as regularizer_strengths
from lit_regularize.sweeps.space import edge_of_range, parse_space
from lit_regularize.sweeps.storage import shown_url
from lit_regularize.sweeps.study import (COUNTED, METRIC, best_trial, counted, is_multi, looks_at_test_set,
                                        n_params, objectives_of, ordinal, pareto_front, state_counts, val_loss)
from lit_regularize.tables import csv_text, fmt, markdown, write_text

MIN_TRIALS_FOR_IMPORTANCE = 10
TOP_CURVES = 5
FIGURES = ("pareto.png", "landscape.png", "curves.png", "history.png", "importances.png")
CAPTIONS = {"pareto.png": "best val/loss against the parameter count: the Pareto front highlighted",
            "landscape.png": "best val/loss over hidden size and regularization strength",
            "curves.png": "train (dashed) and validation (solid) curves of the top trials and the best "
                          "unregularized one",
            "history.png": "best val/loss per trial (pruned ones marked) and the best so far",
            "importances.png": "parameter importances for val/loss"}


# -- per-trial lines ------------------------------------------------------------------------------------------

def _params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={fmt(v, '{:.3g}')}" for k, v in params.items())


def epochs_text(attrs: Mapping[str, Any]) -> str:
    """A trial's epochs run: '20', or '20 x 5 folds' for a k-fold trial (each fold's epochs, not their sum)."""
    folds = attrs.get("folds_run")
    return fmt(attrs.get("epochs_run")) + (f" x {folds} folds" if folds else "")


def trial_line(t: FrozenTrial) -> str:
    """trial number, state, params, val/loss, best epoch, epochs run, seconds."""
    u = t.user_attrs
    # Optuna stores a pruned trial's last reported value as its value: show it as such
    done = t.state == TrialState.COMPLETE
    value, label = (val_loss(t), METRIC) if done else (_last_value(t), f"last {METRIC}")
    size = f"  params {n_params(t)}" if t.values and len(t.values) > 1 else ""
    return (f"trial {t.number:4d} {t.state.name:<8s} {_params(t.params)}  {label} {fmt(value)}{size}  best epoch "
            f"{fmt(u.get('best_epoch'))}  epochs {epochs_text(u)}  {fmt(u.get('seconds'), '{:.1f}')} s")


def print_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback: one line as each trial finishes (flushed: several workers share the terminal)."""
    print(trial_line(trial), flush=True)


def _last_value(t: FrozenTrial) -> Optional[float]:
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None


# -- leaderboard ----------------------------------------------------------------------------------------------

def _best_value(t: FrozenTrial) -> Optional[float]:
    """A complete trial's value; else the lowest val/loss it reported before it stopped (multi-objective trials
    report nothing to Optuna: their recorded validation curve)."""
    if t.state == TrialState.COMPLETE:
        return val_loss(t)
    reported = list(t.intermediate_values.values()) or t.user_attrs.get("val_curve") or []
    finite = [v for v in reported if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def _sort_key(t: FrozenTrial) -> tuple:
    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(t.state, 2)
    value = _best_value(t)
    return rank, value if value is not None else math.inf, t.number


def param_names(study: optuna.Study, space: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Every param any trial sampled: in the search space's order (its file order, then the strengths a
    regularizer's own search entry adds), then any others in first-seen order."""
    space = space if space is not None else study.user_attrs.get("space") or {}
    sampled = dict.fromkeys(p for t in study.get_trials(deepcopy=False) for p in t.params)
    ordered = [p.name for p in parse_space(space) if p.name in sampled] if space else []
    return ordered + [p for p in sampled if p not in ordered]


def relative(path: Any, folder: str | Path) -> Optional[str]:
    """path relative to folder (POSIX separators), absolute where no relative path exists (another drive);
    a relative path recorded by an older study is taken relative to the working directory."""
    if not path:
        return None
    target, base = Path(path).resolve(), Path(folder).resolve()
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # Windows: another drive
        return str(target)


def leaderboard(study: optuna.Study, space: Optional[Mapping[str, Any]] = None,
                folder: Optional[str | Path] = None) -> list[dict[str, Any]]:
    """One row per trial: complete ones by val/loss (ranked), then pruned, then the rest. No test metrics.
    run_dir relative to `folder` (the report's) when given; multi-objective rows say which trials are on the
    Pareto front."""
    params = param_names(study, space)
    front = {t.number for t in pareto_front(study)}
    rows, rank = [], 0
    for t in sorted(study.get_trials(deepcopy=False), key=_sort_key):
        u = t.user_attrs
        rank += t.state == TrialState.COMPLETE
        row: dict[str, Any] = {"rank": rank if t.state == TrialState.COMPLETE else None, "trial": t.number,
                               "state": t.state.name}
        row.update({p: t.params.get(p) for p in params})
        row.update({"val_loss": _best_value(t), "n_params": n_params(t), "val_acc": u.get("val_acc"),
                    "best_epoch": u.get("best_epoch"), "epochs_run": u.get("epochs_run"), "seconds": u.get("seconds"),
                    "run_dir": relative(u.get("run_dir"), folder) if folder is not None else u.get("run_dir")})
        if is_multi(study):
            row["pareto"] = "front" if t.number in front else ""
        rows.append(row)
    return rows


def leaderboard_columns(params: Sequence[str], multi: bool = False) -> list[tuple[str, str, str]]:
    """(key, header, format) of the Markdown leaderboard (multi-objective: which trials are on the front)."""
    return ([("rank", "rank", "{:d}"), ("trial", "trial", "{:d}"), ("state", "state", "")]
            + ([("pareto", "Pareto", "")] if multi else [])
            + [(p, p, "{:.4g}") for p in params]
            + [("val_loss", "best val/loss", "{:.4f}"), ("n_params", "params", "{:d}"),
               ("val_acc", "val acc", "{:.4f}"), ("best_epoch", "best epoch", "{:d}"), ("epochs_run", "epochs run", "{:d}"),
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
    values = [val_loss(t) for t in trials if t.state == TrialState.COMPLETE]
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
                ax.scatter(c["hidden"], y, marker=marker, color=cmap(norm(val_loss(t))), s=40, edgecolors="k",
                           linewidths=0.3)
        for t in none:  # the unregularized reference strip
            c = t.user_attrs["config"]
            if t.state != TrialState.COMPLETE:
                ax.scatter(c["hidden"], floor, marker="x", color="0.6", s=30)
            else:
                ax.scatter(c["hidden"], floor, marker="x", color=cmap(norm(val_loss(t))), s=40)
        if none:
            ax.axhspan(floor / 1.8, floor * 1.8, color="0.9", zorder=0)
            ax.text(0.01, 0.02, "x: reg none", transform=ax.transAxes, fontsize=8)
        if best is not None and (best in mine or best in none):
            c = best.user_attrs["config"]
            y = floor if c["reg"] == "none" else c[name]
            ax.scatter(c["hidden"], y, marker="*", s=260, facecolors="none", edgecolors="red", linewidths=1.5,
                       label=f"best: trial {best.number} ({val_loss(best):.4f})")
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


def _plot_curves(ax: Any, t: FrozenTrial, label: str, color: Any = None) -> None:
    """A trial's val/loss (solid, dots) and, when recorded, its train/loss (dashed, same colour)."""
    def ys(curve: Sequence[Optional[float]]) -> list[float]:
        return [math.nan if v is None else v for v in curve]
    val = t.user_attrs["val_curve"]
    (line,) = ax.plot(range(1, len(val) + 1), ys(val), marker=".", color=color, label=label)
    train = t.user_attrs.get("train_curve")
    if train:
        ax.plot(range(1, len(train) + 1), ys(train), "--", color=line.get_color(), linewidth=1.0, alpha=0.8)


def curves_figure(study: optuna.Study, top: int = TOP_CURVES) -> Any:
    """Train (dashed) and val (solid) loss curves (1-based epochs) of the top trials and of the best unregularized
    trial, each trial drawn once (the best unregularized one is labelled so when it is a top trial)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    done = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.user_attrs.get("val_curve") and val_loss(t) is not None),
                  key=lambda t: (val_loss(t), t.number))
    fig, (ax,) = _figure(1, width=7.0)
    none = next((t for t in done if t.user_attrs["config"]["reg"] == "none"), None)
    shown = done[:top]
    for t in shown:
        mark = ", best unregularized" if t is none else ""
        _plot_curves(ax, t, f"trial {t.number} ({t.user_attrs['config']['reg']}{mark}, {val_loss(t):.4f})")
    if none is not None and none not in shown:
        _plot_curves(ax, none, f"best unregularized: trial {none.number} ({val_loss(none):.4f})", color="k")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.lines:
        handles, labels = ax.get_legend_handles_labels()
        style = [Line2D([], [], color="0.3", marker=".", label=METRIC),
                 Line2D([], [], color="0.3", linestyle="--", label="train/loss")]
        if any(t.user_attrs.get("train_curve") for t in shown):
            handles += style
            labels += [h.get_label() for h in style]
        ax.legend(handles, labels, fontsize=8)
    ax.set_title(f"{study.study_name}: train (dashed) and validation (solid) loss of the top {len(shown)} trials")
    return fig


def history_figure(study: optuna.Study) -> Any:
    """Best val/loss per finished trial in trial order: complete trials as dots with the best so far, pruned ones
    as hollow grey triangles at the lowest val/loss they reported (diverged ones, without any, as crosses on top)."""
    from matplotlib.ticker import MaxNLocator

    trials = study.get_trials(deepcopy=False, states=COUNTED)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and val_loss(t) is not None]
    rest = [t for t in trials if t.state != TrialState.COMPLETE or val_loss(t) is None]
    pruned = [t for t in rest if _best_value(t) is not None]
    lost = [t for t in rest if _best_value(t) is None]
    fig, (ax,) = _figure(1, width=7.0)
    if complete:
        ax.scatter([t.number for t in complete], [val_loss(t) for t in complete], s=28, color="C0", zorder=3,
                   label=f"complete ({len(complete)})")
        best, xs, ys = math.inf, [], []
        for t in complete:
            best = min(best, val_loss(t))
            xs.append(t.number)
            ys.append(best)
        last = max(t.number for t in trials)  # the best so far holds through the trials after the last complete one
        ax.step(xs + [last], ys + [best], where="post", color="C3", label="best so far")
    if pruned:
        ax.scatter([t.number for t in pruned], [_best_value(t) for t in pruned], marker="v", s=34,
                   facecolors="none", edgecolors="0.45", zorder=3,
                   label=f"pruned ({len(pruned)}): lowest {METRIC} before it stopped")
    if lost:  # nothing finite to place on the value axis: marked along the top edge
        ax.scatter([t.number for t in lost], [0.97] * len(lost), marker="x", color="0.45",
                   transform=ax.get_xaxis_transform(), label=f"stopped without a finite {METRIC} ({len(lost)})")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"best {METRIC}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize=8)
    counts = ", ".join(f"{n} {what}" for n, what in ((len(complete), "complete"), (len(pruned) + len(lost), "pruned"))
                       if n)
    ax.set_title(f"{study.study_name}: {METRIC} per trial ({len(trials)} finished trials: {counts or 'none'})")
    return fig


def pareto_figure(study: optuna.Study) -> Any:
    """Multi-objective: best val/loss against the parameter count (log), every complete trial a point; the Pareto
    front highlighted (red, joined as a staircase, trial numbers), dominated trials grey."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    front = sorted(pareto_front(study), key=lambda t: (t.values[1], t.values[0]))
    on = {t.number for t in front}
    rest = [t for t in trials if t.number not in on]
    fig, (ax,) = _figure(1, width=7.0, height=4.8)
    if rest:
        ax.scatter([t.values[1] for t in rest], [t.values[0] for t in rest], s=26, color="0.7",
                   label=f"dominated ({len(rest)})", zorder=2)
    if front:
        ax.step([t.values[1] for t in front], [t.values[0] for t in front], where="post", color="C3", alpha=0.6,
                zorder=3)
        ax.scatter([t.values[1] for t in front], [t.values[0] for t in front], s=46, color="C3", edgecolors="k",
                   linewidths=0.5, label=f"Pareto front ({len(front)})", zorder=4)
        for t in front:
            ax.annotate(str(t.number), (t.values[1], t.values[0]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    # 200, 500, 1,000, 2,000 ... instead of overlapping 3×10² minor labels
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (trainable weights, log scale)")
    ax.set_ylabel(f"best {METRIC} (lower is better)")
    ax.grid(alpha=0.3, which="both")
    if ax.collections:
        ax.legend(fontsize=8)
    ax.set_title(f"{study.study_name}: {METRIC} vs parameters ({len(front)} of {len(trials)} complete trials on the "
                 "front; numbers: trials)")
    return fig


def _target(study: optuna.Study) -> Any:
    """Optuna's plots of one value: val/loss (the first objective of a multi-objective study)."""
    return (lambda t: t.values[0]) if is_multi(study) else None


def importances_figure(study: optuna.Study) -> Any:
    """Optuna's parameter importances for val/loss, titled with the number of finished trials behind them."""
    from optuna.visualization import matplotlib as mpl_vis

    n = counted(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = mpl_vis.plot_param_importances(study, target=_target(study), target_name=METRIC)
    ax = ax.flat[0] if hasattr(ax, "flat") else ax
    for loc in ("left", "center", "right"):  # Optuna titles some plots on the left
        ax.set_title("", loc=loc)
    ax.set_title(f"{study.study_name}: importance for {METRIC} ({n} finished trials" + (
        f", fewer than {MIN_TRIALS_FOR_IMPORTANCE}: unreliable)" if n < MIN_TRIALS_FOR_IMPORTANCE else ")"))
    return ax.figure


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def write_figures(study: optuna.Study, out: Path) -> tuple[list[Path], dict[str, str]]:
    """The PNG figures (pareto.png only for multi-objective studies) and, with plotly, Optuna's interactive HTML
    pages; (files written, figure -> why it was skipped)."""
    import matplotlib.pyplot as plt

    written, skipped = [], {}
    builds = ([("pareto.png", pareto_figure)] if is_multi(study) else []) + [
        ("landscape.png", landscape_figure), ("curves.png", curves_figure), ("history.png", history_figure),
        ("importances.png", importances_figure)]
    for name, build in builds:
        try:
            written.append(_save(build(study), out / name))
        except Exception as e:  # e.g. importances need 2+ complete trials: skip that figure, keep the report
            skipped[name] = _first_line(e)
        finally:
            plt.close("all")
    if importlib.util.find_spec("plotly") is not None:
        pages = [("history.html", optuna.visualization.plot_optimization_history),
                 ("importances.html", optuna.visualization.plot_param_importances)]
        if is_multi(study):
            pages.insert(0, ("pareto.html", optuna.visualization.plot_pareto_front))
        for name, plot in pages:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    page = (plot(study, target_names=objectives_of(study)) if name == "pareto.html" else
                            plot(study, target=_target(study), target_name=METRIC)).to_html()
                written.append(write_text(out / name, page))
            except Exception as e:
                skipped[name] = _first_line(e)
    return written, skipped


# -- the report -----------------------------------------------------------------------------------------------

def write_report(study: optuna.Study, out: str | Path, space: Optional[Mapping[str, Any]] = None,
                 fixed: Optional[Mapping[str, Any]] = None, storage: str = "") -> list[Path]:
    """leaderboard.md/.csv, figures (PNG; HTML with plotly) and report.md, paths relative to `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--report {out}: is a file, not a folder")
    space = dict(space if space is not None else study.user_attrs.get("space") or {})
    fixed = dict(fixed if fixed is not None else study.user_attrs.get("fixed") or {})
    base = make_config(fixed)
    rows = leaderboard(study, space, out)
    params = param_names(study, space)
    columns = leaderboard_columns(params, is_multi(study))
    written = [write_text(out / "leaderboard.csv", csv_text(rows, [c[0] for c in columns] + ["run_dir"])),
               write_text(out / "leaderboard.md", markdown(columns, rows))]
    figures, skipped = write_figures(study, out)
    written += figures
    notes = study_warnings(study, space, base.max_epochs)
    page = report_markdown(study, rows, params, space, fixed, notes, skipped, storage, [p.name for p in written], out)
    written.append(write_text(out / "report.md", page))
    return written


def _folder(path: Any, out: Path) -> str:
    """A run folder as a Markdown link relative to the report folder."""
    rel = relative(path, out)
    return f"[`{rel}`]({rel})" if rel else "–"


def _figure_lines(files: Sequence[str], skipped: Mapping[str, str]) -> list[str]:
    """Each PNG with its caption, and its interactive HTML page when one was written."""
    lines = []
    for f in (f for f in FIGURES if f in files):
        page = f.replace(".png", ".html")
        lines.append(f"![{CAPTIONS[f]}]({f})" + (f" ([interactive]({page}))" if page in files else ""))
    lines += [f"- [{f}]({f}) (interactive)" for f in files if f.endswith(".html")
              and f.replace(".html", ".png") not in files]
    return lines + [f"- {f} skipped: {why}" for f, why in skipped.items()]


def report_markdown(study: optuna.Study, rows: list[dict[str, Any]], params: Sequence[str],
                    space: Mapping[str, Any], fixed: Mapping[str, Any], notes: Sequence[str],
                    skipped: Mapping[str, str], storage: str, files: Sequence[str],
                    out: str | Path = ".") -> str:
    """report.md: counts, best trial, the confirmation and Pareto front (if any), warnings, the final test estimate
    (if refit), figures, the settings the user gave, the search space, leaderboard; paths relative to `out`."""
    out = Path(out)
    counts = state_counts(study)
    shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    best = best_trial(study)
    multi = is_multi(study)
    objective = (f"objectives: best {METRIC} and the parameter count, both minimized (a Pareto front; no pruning, "
                 "which Optuna cannot do with two objectives)" if multi else
                 f"objective: best {METRIC} (lower is better), minimized")
    lines = [f"# Study `{study.study_name}`", "",
             f"{counted(study)} finished trials ({shown}); {objective}; validation data only: no trial saw the test "
             "set.", ""]
    if storage:
        lines += [f"Storage: `{shown_url(storage)}`", ""]
    if best is not None:
        u = best.user_attrs
        from lit_regularize.sweeps.confirm import confirmed_winner

        which = ("Lowest val/loss on the Pareto front: trial" if multi else
                 "Best one-seed trial" if confirmed_winner(study) is not None else "Best trial")
        size = f", {n_params(best)} parameters" if n_params(best) is not None else ""
        lines += [f"**{which} {best.number}**: {METRIC} {fmt(val_loss(best))}, val acc {fmt(u.get('val_acc'))}, "
                  f"best epoch {fmt(u.get('best_epoch'))} of {epochs_text(u)} run{size}; params "
                  f"`{_params(best.params)}`; run folder {_folder(u.get('run_dir'), out)}.", ""]
    lines += confirmation_lines(study, out)
    if multi:
        lines += pareto_lines(study, params, out)
    looks = looks_at_test_set(study)
    refit = looks[-1] if looks else None
    lines += ["## Final untouched test estimate" if len(looks) < 2 else
              f"## Test estimate ({ordinal(len(looks))} look at the test set)", ""]
    if refit:
        what = ("trained on the trial's training and validation examples together" if refit["mode"] == "all"
                else "the same training examples, best-epoch weights")
        chosen = f"{refit['chosen']}; " if refit.get("chosen") else ""
        lines += [f"Refit of trial {refit['trial']} ({chosen}{what}, {refit['epochs']} epochs): **test acc "
                  f"{fmt(refit['test_acc'])}**, test loss {fmt(refit['test_loss'])}. {_look_note(looks)} "
                  f"Run folder {_folder(refit['run_dir'], out)}.", ""]
    else:
        lines += ["None yet: run the sweep again with `--refit-best` (or `--refit-best all`) to test the "
                  "(confirmed) winner once.", ""]
    lines += ["## Warnings", ""] + ([f"- {n}" for n in notes] or ["- none"]) + [""]
    lines += ["## Figures", ""] + _figure_lines(files, skipped) + [""]
    # what the user gave (flags, --config): the trials' own defaults (no progress bars, no histograms) and the
    # presets' values are not settings anyone chose
    lines += ["## Fixed settings", "", "The settings given for every trial (flags and --config); everything else is "
              "the default.", "", "```yaml", yaml.safe_dump(dict(fixed), sort_keys=False).strip() if fixed else "{}",
              "```", ""]
    lines += ["## Search space", "", "```yaml", yaml.safe_dump(dict(space), sort_keys=False).strip(), "```", ""]
    lines += ["## Leaderboard", "", "(also `leaderboard.csv`, full precision; a pruned trial's best val/loss is the "
              "lowest it reported before it was stopped)", "",
              markdown(leaderboard_columns(params, multi), rows)]
    return "\n".join(lines)


def confirmation_lines(study: optuna.Study, out: Path) -> list[str]:
    """## Confirmation: the re-trained top trials, mean ± 95 % CI over their new seeds, the winner and its verdict."""
    from lit_regularize.sweeps.confirm import RESULT, current, shown as interval_text

    r = study.user_attrs.get(RESULT)
    if not r:
        return []
    pool = "Pareto-front trials of lowest val/loss" if r.get("multi") else "best complete trials"
    lines = [f"## Confirmation ({r['seeds']} new seeds for each of the {r['top']} {pool})", "",
             f"Each trial re-trained with seeds it never had (its seed + 1000, + 2000, …), validation only; mean ± "
             f"{r['level'] * 100:.0f} % confidence interval (Student t) of the new seeds' best {METRIC}. The one-seed "
             "value is the trial's own: the lowest of many noisy draws, so biased low.", "",
             "| rank | trial | confirmed val/loss | seeds | diverged | one-seed val/loss | params | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(r["rows"]):
        # one link per trial: its seeds' runs are the seed_S folders in it
        runs = _folder(Path(row["run_dirs"][0]).parent.parent, out) if row["run_dirs"] else "–"
        lines.append(f"| {i + 1} | {row['trial']} | {interval_text(row)} | {row['n']} | {row['diverged']} | "
                     f"{fmt(row['one_seed'])} | {fmt(row.get('n_params'))} | {runs} |")
    same = r["winner"] == r["one_seed_winner"]
    lines += ["", f"**Confirmed winner: trial {r['winner']}** (" + (
        "also the one-seed winner" if same else f"the one-seed winner was trial {r['one_seed_winner']}")
        + f"). {r['sentence']}", ""]
    if not current(study, r):
        lines += ["Note: trials finished since this confirmation changed the top trials; run the sweep again with "
                  "`--confirm-top` to confirm the present ones (`--refit-best` refits the best trial meanwhile).", ""]
    return lines


def pareto_lines(study: optuna.Study, params: Sequence[str], out: Path) -> list[str]:
    """## Pareto front: its trials from the smallest model up, with what they traded."""
    front = sorted(pareto_front(study), key=lambda t: (t.values[1], t.values[0]))
    cols = [("trial", "trial", "{:d}"), ("n_params", "params", "{:d}"), ("val_loss", f"best {METRIC}", "{:.4f}"),
            ("val_acc", "val acc", "{:.4f}")] + [(p, p, "{:.4g}") for p in params] + [("run", "run folder", "")]
    rows = [{"trial": t.number, "n_params": int(t.values[1]), "val_loss": t.values[0],
             "val_acc": t.user_attrs.get("val_acc"), **{p: t.params.get(p) for p in params},
             "run": _folder(t.user_attrs.get("run_dir"), out)} for t in front]
    return (["## Pareto front", "",
             f"{len(front)} trials no other trial beats on both val/loss and parameter count (smallest first; "
             "`pareto.png`). `--refit-best` and `--confirm-top` rank them by val/loss.", "",
             markdown(cols, rows)] if front else ["## Pareto front", "", "No complete trial yet.", ""])


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
        which = (f"trial {best.number}, the Pareto front's lowest {METRIC} (front: {len(pareto_front(study))} "
                 "trials)" if is_multi(study) else f"best trial {best.number}")
        size = f"  parameters {n_params(best)}" if is_multi(study) else ""
        lines.append(f"{which}: {METRIC} {val_loss(best):.4f}{size}  val acc "
                     f"{fmt(u.get('val_acc'))}  best epoch {fmt(u.get('best_epoch'))}  params {_params(best.params)}")
        lines.append(f"best run:   {u.get('run_dir')}")
    return "\n".join(lines)


__all__ = ["trial_line", "print_trial", "leaderboard", "leaderboard_columns", "study_warnings", "write_report",
           "write_figures", "landscape_figure", "curves_figure", "history_figure", "pareto_figure",
           "importances_figure", "report_markdown", "confirmation_lines", "pareto_lines", "relative", "dashboard_hint",
           "final_block", "param_names", "FIGURES"]
