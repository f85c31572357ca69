"""Figures people look at: learning curves (train dashed / val solid, seed bands), accuracy, weight histograms
per layer, sparsity, k-fold curves.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot), so nothing depends on a display
or on global pyplot state, and they can be saved or logged to TensorBoard from any process.
`plotted_series(fig)` reads back what a figure draws (lines, histograms, bars), so tests can check the plotted
numbers against the histories and weights they came from.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, StepPatch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from lit_regularize.files import atomic_write

NEAR_ZERO = 1e-3  # |w| below this counts as "pruned" in the sparsity figure (the notebooks' threshold)
TB_WIDTH_PX = 1200  # width of figures logged to TensorBoard: text stays legible in its image panel


# -- numbers behind the figures ------------------------------------------------------------------------------

def near_zero_fraction(w: torch.Tensor | np.ndarray, tol: float = NEAR_ZERO) -> float:
    """Fraction of entries with |w| < tol."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    return float((a < tol).mean()) if a.size else float("nan")


def mean_abs(w: torch.Tensor | np.ndarray) -> float:
    """Mean |w|."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    return float(a.mean()) if a.size else float("nan")


def linear_weights(state_dict: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    """The Linear weight matrices of a RegularizedMLP state dict, in layer order (2-D `net.*.weight`)."""
    return [v.detach().cpu().float().numpy() for k, v in state_dict.items()
            if k.startswith("net.") and k.endswith(".weight") and v.dim() == 2]


def checkpoint_weights(path: str | Path) -> list[np.ndarray]:
    """Linear weight matrices stored in a Lightning checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return linear_weights(ckpt["state_dict"])


def weight_stats(weights: Sequence[np.ndarray], tol: float = NEAR_ZERO) -> dict[str, float]:
    """Mean |w| and near-zero fraction (0..1) of the first layer and of all Linear weights together."""
    everything = np.concatenate([w.ravel() for w in weights]) if weights else np.zeros(0)
    first = weights[0] if weights else np.zeros(0)
    return {"mean_abs_w_first": mean_abs(first), "near_zero_first": near_zero_fraction(first, tol),
            "mean_abs_w_all": mean_abs(everything), "near_zero_all": near_zero_fraction(everything, tol)}


def _finite(v: Any) -> float:
    return float(v) if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else float("nan")


def curve_band(curves: Sequence[Sequence[Optional[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs 1.., mean, std) over runs of possibly different lengths; epochs no run reached are dropped."""
    n = max((len(c) for c in curves), default=0)
    grid = np.full((len(curves), n), np.nan)
    for i, c in enumerate(curves):
        grid[i, :len(c)] = [_finite(v) for v in c]
    keep = ~np.all(np.isnan(grid), axis=0)  # a kept column has a value, so nanmean never sees an empty one
    grid = grid[:, keep]
    count = np.sum(~np.isnan(grid), axis=0)
    mean = np.nanmean(grid, axis=0)
    # the sample std (n - 1), as the tables' mean ± std; an epoch only one run reached has no spread
    dev = np.where(np.isnan(grid), 0.0, grid - mean)
    std = np.sqrt(np.sum(dev ** 2, axis=0) / np.maximum(count - 1, 1))
    return np.arange(1, n + 1)[keep], mean, std


def epochs_run(history: Mapping[str, Sequence]) -> int:
    """Epochs a history covers: its longest per-epoch list (the `epoch` list when there is one)."""
    if history.get("epoch"):
        return len(history["epoch"])
    return max((len(v) for v in history.values() if isinstance(v, (list, tuple))), default=0)


def epochs_phrase(histories: Sequence[Mapping[str, Sequence]]) -> str:
    """'20 epochs', '1 epoch' or '3–20 epochs': the epochs the given runs actually ran."""
    counts = [epochs_run(h) for h in histories]
    if not counts:
        return "no epochs"
    lo, hi = min(counts), max(counts)
    if lo == hi:
        return f"{hi} epoch" + ("" if hi == 1 else "s")
    return f"{lo}–{hi} epochs"


# -- figures -------------------------------------------------------------------------------------------------

def _figure(ncols: int, nrows: int = 1, width: float = 6.0, height: float = 4.2) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def _colors(n: int) -> list[str]:
    """Distinct colours: tab10 up to 10 runs, tab20 beyond."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps
    cmap = colormaps["tab20"]
    return [to_hex(cmap(i % 20)) for i in range(n)]


def _epoch_axis(ax: Any, last_epoch: int) -> None:
    """1-based integer epoch ticks from 1 to the last epoch run."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if last_epoch >= 1:
        ax.set_xlim(0.5, last_epoch + 0.5)
    ax.grid(alpha=0.3)


def _legend_below(fig: Figure, handles: list, ncol_max: int = 4) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol_max, len(handles)), fontsize=9,
                   frameon=False)


def curves_figure(histories: Mapping[str, Sequence[Mapping[str, Sequence]]], title: str = "",
                  epochs_note: Optional[str] = None) -> Figure:
    """Learning curves of every run; `histories` maps a run label to its histories (one per seed).

    Left: training loss (dashed) and validation loss (solid) in the run's colour on one axis, so the gap
    between them (overfitting) is visible; ★ at the lowest validation loss; with several seeds the lines are
    means and the validation loss has a ± 1 std band. Right: validation accuracy per run, same colours.
    The title ends with the epochs the runs actually ran ("20 epochs", "3–20 epochs"), plus `epochs_note`.
    """
    fig, (ax_loss, ax_acc) = _figure(2, width=6.0, height=4.4)
    ax_loss.set_gid("loss")
    ax_acc.set_gid("accuracy")
    labels = list(histories)
    colors = _colors(len(labels))
    run_handles = []
    most_seeds = 0
    last_epoch = 0
    for label, color in zip(labels, colors):
        runs = list(histories[label])
        seeds = len(runs)
        most_seeds = max(most_seeds, seeds)
        last_epoch = max([last_epoch] + [epochs_run(h) for h in runs])
        # validation loss first: a run's first line is its validation curve
        epochs, val, std = curve_band([h.get("val_loss") or [] for h in runs])
        summary = label if seeds == 1 else f"{label} (mean of {seeds} seeds)"
        if len(epochs) and np.any(np.isfinite(val)):
            ax_loss.plot(epochs, val, color=color, linestyle="-", marker="o", markersize=3, linewidth=1.8,
                         label=f"{label}: val loss")
            if seeds > 1:
                ax_loss.fill_between(epochs, val - std, val + std, color=color, alpha=0.18, linewidth=0)
            best = int(np.nanargmin(val))
            ax_loss.plot([epochs[best]], [val[best]], color=color, linestyle="none", marker="*", markersize=15,
                         markeredgecolor="k", zorder=5, label=f"{label}: best epoch")
            summary += f" — best epoch {int(epochs[best])}, val loss {val[best]:.3f}"
        t_epochs, train, _ = curve_band([h.get("train_loss") or [] for h in runs])
        if len(t_epochs) and np.any(np.isfinite(train)):
            ax_loss.plot(t_epochs, train, color=color, linestyle="--", linewidth=1.5, label=f"{label}: train loss",
                         marker="o" if len(t_epochs) == 1 else "None", markersize=3)  # one epoch: a dot
        ta_epochs, train_acc, _ = curve_band([h.get("train_acc") or [] for h in runs])
        if len(ta_epochs) and np.any(np.isfinite(train_acc)):
            ax_acc.plot(ta_epochs, train_acc, color=color, linestyle="--", linewidth=1.5, label=f"{label}: train acc",
                        marker="o" if len(ta_epochs) == 1 else "None", markersize=3)
        a_epochs, acc, acc_std = curve_band([h.get("val_acc") or [] for h in runs])
        if len(a_epochs) and np.any(np.isfinite(acc)):
            ax_acc.plot(a_epochs, acc, color=color, linestyle="-", marker="o", markersize=3, linewidth=1.8,
                        label=f"{label}: val acc")
            if seeds > 1:
                ax_acc.fill_between(a_epochs, acc - acc_std, acc + acc_std, color=color, alpha=0.18, linewidth=0)
            if len(epochs) and np.any(np.isfinite(val)):
                at = np.flatnonzero(a_epochs == epochs[best])
                if at.size and math.isfinite(acc[at[0]]):
                    summary += f", acc {acc[at[0]]:.1%}"
        run_handles.append(Line2D([], [], color=color, linewidth=3, label=summary))
    band = "\nlines: mean over seeds, shaded: ± 1 std" if most_seeds > 1 else ""
    ax_loss.set_title("loss: training (dashed, data term) vs validation (solid)\n★ = best epoch (lowest val loss)"
                      + band, fontsize=10)
    ax_loss.set_ylabel("loss")
    ax_acc.set_title("accuracy: training (dashed) vs validation (solid)" + band, fontsize=10)
    ax_acc.set_ylabel("accuracy")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for ax in (ax_loss, ax_acc):
        _epoch_axis(ax, last_epoch)
    _legend_below(fig, run_handles, ncol_max=2)
    every = [h for runs in histories.values() for h in runs]
    when = epochs_phrase(every) + (f", {epochs_note}" if epochs_note else "")
    fig.suptitle(f"{title} ({when})" if title else when, fontsize=13)
    return fig


def _layer_names(n: int) -> list[str]:
    return [f"Linear layer {i + 1}" for i in range(n - 1)] + ["output layer"] if n else []


def weights_figure(weights: Mapping[str, Sequence[np.ndarray]], bins: int = 80,
                   which: str = "best checkpoint") -> Figure:
    """One row per Linear layer (layer 1 at the top, output layer last), runs overlaid in their colours.

    Left column: histogram of the weights (% of the layer's weights per bin, log scale), bins shared by the
    runs. Right column: histogram of log10 |w| with the near-zero threshold marked, which shows how many weights
    a penalty pushed to (almost) zero. Runs with fewer layers leave middle rows out; output layers share the
    last row. `which` names the weights shown (subtitle), e.g. "best checkpoint" or "last epoch".
    """
    labels = list(weights)
    n_rows = max((len(ws) for ws in weights.values()), default=0) or 1
    names = _layer_names(n_rows)
    colors = dict(zip(labels, _colors(len(labels))))
    fig, axes = _figure(2, n_rows, width=6.0, height=2.9)
    axes = axes.reshape(n_rows, 2)

    rows: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(n_rows)]  # (run, weight matrix) per row
    for lab in labels:
        ws = list(weights[lab])
        for k, w in enumerate(ws):
            rows[n_rows - 1 if k == len(ws) - 1 else k].append((lab, np.asarray(w, dtype=np.float64)))

    for row in range(n_rows):
        ax_w, ax_log = axes[row]
        ax_w.set_gid(f"{names[row]}: w")
        ax_log.set_gid(f"{names[row]}: log10|w|")
        # shapes as in → out (a Linear weight is stored out × in)
        shapes = list(dict.fromkeys(f"{w.shape[-1]}→{w.shape[0]}" if w.ndim == 2 else str(w.shape)
                                    for _, w in rows[row]))
        sizes = list(dict.fromkeys(f"{w.size:,}" for _, w in rows[row]))
        members = [(lab, w.ravel()) for lab, w in rows[row]]
        biggest = max((v.size for _, v in members), default=0)
        row_bins = int(np.clip(2 * math.sqrt(biggest), 10, bins))  # a 16-weight layer gets 10 bins, not 80
        lim = max((float(np.abs(v).max()) for _, v in members if v.size), default=1.0) or 1.0
        edges = np.linspace(-lim, lim, row_bins + 1)
        finite_logs = [np.log10(np.abs(v[v != 0])) for _, v in members if np.any(v != 0)]
        lo = min(min((float(x.min()) for x in finite_logs if x.size), default=-4.0), math.log10(NEAR_ZERO) - 1)
        hi = max((float(x.max()) for x in finite_logs if x.size), default=0.0)
        log_edges = np.linspace(math.floor(lo), math.ceil(hi + 1e-9), row_bins + 1)
        for lab, v in members:
            if not v.size:
                continue
            pct = np.full(v.size, 100.0 / v.size)  # % of this layer's weights, so different widths compare
            counts, _ = np.histogram(v, bins=edges, weights=pct)
            ax_w.stairs(counts, edges, color=colors[lab], linewidth=1.6, label=lab)
            nz = v[v != 0]
            log_counts, _ = np.histogram(np.log10(np.abs(nz)), bins=log_edges, weights=pct[:nz.size])
            ax_log.stairs(log_counts, log_edges, color=colors[lab], linewidth=1.6,
                          label=f"{lab}: {near_zero_fraction(v):.1%} below {NEAR_ZERO:g}")
        if biggest >= 1000:  # tails of a big layer only show on a log scale
            ax_w.set_yscale("log")
            ax_w.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax_w.set_ylabel("% of weights (log scale)")
        else:
            ax_w.set_ylabel("% of weights")
        ax_w.set_xlabel("weight w")
        ax_w.set_title(f"{names[row]} ({' / '.join(shapes)}: {' / '.join(sizes)} weights)", fontsize=10,
                       loc="left")
        ax_log.axvline(math.log10(NEAR_ZERO), color="k", linestyle=":", linewidth=1.2, gid="vline")
        ax_log.set_xlabel(f"log10 |w|   (dotted: |w| = {NEAR_ZERO:g}; exact zeros not shown)")
        ax_log.set_ylabel("% of weights")
        ax_log.set_title(f"{names[row]}: magnitude", fontsize=10, loc="left")
        if members:
            ax_log.legend(fontsize=8, loc="best", framealpha=0.85)
        for ax in (ax_w, ax_log):
            ax.grid(alpha=0.3)
    _legend_below(fig, [Line2D([], [], color=colors[lab], linewidth=3, label=lab) for lab in labels], ncol_max=6)
    fig.suptitle(f"weight distributions per layer — {which}", fontsize=13)
    return fig


def sparsity_figure(stats: Mapping[str, Mapping[str, float]], which: str = "best checkpoint") -> Figure:
    """Left: % of weights with |w| < 1e-3 (axis and bar labels in %); right: mean |w|; first layer and all
    Linear layers per run. `stats` maps a run label to `weight_stats` (fractions 0..1)."""
    labels = list(stats)
    fig, (ax_pct, ax_abs) = _figure(2, width=max(4.5, 1.0 * len(labels) + 2.5), height=4.4)
    ax_pct.set_gid("near zero %")
    ax_abs.set_gid("mean |w|")
    x = np.arange(len(labels))
    parts = (("first", "first layer", "C0"), ("all", "all Linear layers", "C1"))
    for k, (key, name, color) in enumerate(parts):
        pct = [100.0 * _finite(stats[lab].get(f"near_zero_{key}")) for lab in labels]
        bars = ax_pct.bar(x + (k - 0.5) * 0.38, pct, width=0.38, color=color, label=name)
        ax_pct.bar_label(bars, labels=[f"{v:.1f}%" if math.isfinite(v) else "–" for v in pct], fontsize=8,
                         padding=2)
        mabs = [_finite(stats[lab].get(f"mean_abs_w_{key}")) for lab in labels]
        bars = ax_abs.bar(x + (k - 0.5) * 0.38, mabs, width=0.38, color=color, label=name)
        ax_abs.bar_label(bars, labels=[f"{v:.3g}" if math.isfinite(v) else "–" for v in mabs], fontsize=8,
                         padding=2)
    top = max((100.0 * _finite(stats[lab].get(f"near_zero_{key}")) for lab in labels for key in ("first", "all")
               if math.isfinite(_finite(stats[lab].get(f"near_zero_{key}")))), default=0.0)
    ax_pct.set_ylim(0, min(105.0, max(5.0, 1.18 * top)))
    ax_pct.yaxis.set_major_formatter(PercentFormatter(xmax=100.0, decimals=0))
    ax_pct.set_ylabel(f"% of weights with |w| < {NEAR_ZERO:g}")
    ax_pct.set_title(f"near-zero weights (|w| < {NEAR_ZERO:g})", fontsize=11)
    top_abs = max((v for lab in labels for key in ("first", "all")
                   for v in [_finite(stats[lab].get(f"mean_abs_w_{key}"))] if math.isfinite(v)), default=0.0)
    ax_abs.set_ylim(0, 1.18 * top_abs if top_abs > 0 else 1.0)
    ax_abs.set_ylabel("mean |w|")
    ax_abs.set_title("mean |w|", fontsize=11)
    for ax in (ax_pct, ax_abs):
        ax.set_xticks(x, labels, rotation=20 if max((len(s) for s in labels), default=0) > 10 else 0)
        ax.grid(alpha=0.3, axis="y")
    _legend_below(fig, [Patch(color=c, label=name) for _, name, c in parts])
    fig.suptitle(f"weight sparsity — {which}", fontsize=13)
    return fig


def fold_figure(folds: Sequence[Mapping[str, Sequence]], mean_val: Sequence[float], chosen_epoch: int,
                title: str = "", labels: Optional[Sequence[str]] = None) -> Figure:
    """K-fold curves. Left: each fold's training (dashed) and validation (solid) loss in the fold's colour, the
    mean validation loss over folds (thick black) and a line at the chosen (1-based) epoch. Right: each fold's
    validation accuracy and its mean. The title ends with the epochs the folds ran."""
    fig, (ax_loss, ax_acc) = _figure(2, width=6.0, height=4.4)
    ax_loss.set_gid("loss")
    ax_acc.set_gid("accuracy")
    labels = list(labels) if labels is not None else [f"fold {i}" for i in range(len(folds))]
    colors = _colors(len(folds))
    last_epoch = max([len(mean_val)] + [epochs_run(h) for h in folds])
    handles = []
    for h, color, label in zip(folds, colors, labels):
        val = [_finite(v) for v in h.get("val_loss") or []]
        ax_loss.plot(range(1, len(val) + 1), val, color=color, alpha=0.75, linewidth=1.2, linestyle="-",
                     label=f"{label}: val loss")
        train = [_finite(v) for v in h.get("train_loss") or []]
        ax_loss.plot(range(1, len(train) + 1), train, color=color, alpha=0.75, linewidth=1.2, linestyle="--",
                     label=f"{label}: train loss")
        train_acc = [_finite(v) for v in h.get("train_acc") or []]
        if any(math.isfinite(v) for v in train_acc):
            ax_acc.plot(range(1, len(train_acc) + 1), train_acc, color=color, alpha=0.75, linewidth=1.2,
                        linestyle="--", label=f"{label}: train acc")
        acc = [_finite(v) for v in h.get("val_acc") or []]
        if acc:
            ax_acc.plot(range(1, len(acc) + 1), acc, color=color, alpha=0.75, linewidth=1.2,
                        label=f"{label}: val acc")
        handles.append(Line2D([], [], color=color, linewidth=2.5, label=label))
    mean = [_finite(v) for v in mean_val]
    ax_loss.plot(range(1, len(mean) + 1), mean, color="k", linewidth=2.8, label="mean val loss")
    a_epochs, mean_acc, _ = curve_band([h.get("val_acc") or [] for h in folds])
    if len(mean_acc) and np.any(np.isfinite(mean_acc)):
        ax_acc.plot(a_epochs, mean_acc, color="k", linewidth=2.8, label="mean val acc")
    for ax in (ax_loss, ax_acc):
        ax.axvline(chosen_epoch, color="k", linestyle=":", linewidth=1.5, label=f"chosen epoch {chosen_epoch}",
                   gid="vline")
        _epoch_axis(ax, last_epoch)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss per fold: training (dashed) vs validation (solid)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax_acc.set_title("accuracy per fold: training (dashed) vs validation (solid)")
    keys = [Line2D([], [], color="0.3", linestyle="-", label="validation"),
            Line2D([], [], color="0.3", linestyle="--", label="training (data term)"),
            Line2D([], [], color="k", linewidth=2.8, label="mean over folds (validation)"),
            Line2D([], [], color="k", linestyle=":", linewidth=1.5, label=f"chosen epoch {chosen_epoch}")]
    _legend_below(fig, handles + keys, ncol_max=max(5, min(8, len(folds))))
    when = epochs_phrase(folds) + " per fold"
    fig.suptitle(f"{title} ({when})" if title else when, fontsize=13)
    return fig


# -- reading a figure back -----------------------------------------------------------------------------------

def plotted_series(fig: Figure) -> dict[str, Any]:
    """What a figure draws, by axis: {"title": suptitle, "axes": {gid or "axN": {...}}}.

    Per axis: "title", "xlabel", "ylabel", "yscale", "xticks"; "lines" {label: {"x", "y", "linestyle", "color",
    "marker"}} (visible, labelled Line2D, legend keys excluded), "stairs" {label: {"values", "edges", "color"}},
    "bars" {label: {"heights", "texts"}}, "vlines" [x of vertical lines], "bands" (number of filled bands).
    """
    out: dict[str, Any] = {"title": fig._suptitle.get_text() if fig._suptitle else "", "axes": {}}
    for i, ax in enumerate(fig.axes):
        info: dict[str, Any] = {"title": ax.get_title() or ax.get_title(loc="left"), "xlabel": ax.get_xlabel(),
                                "ylabel": ax.get_ylabel(), "yscale": ax.get_yscale(),
                                "xticks": [float(t) for t in ax.get_xticks()],
                                "lines": {}, "stairs": {}, "bars": {}, "vlines": [], "bands": 0}
        for ln in ax.lines:
            x = np.asarray(ln.get_xdata(), dtype=float)
            if ln.get_gid() == "vline":  # axvline: x in data, y across the axis
                info["vlines"].append(float(x[0]))
                continue
            label = ln.get_label()
            if label.startswith("_"):
                continue
            info["lines"][label] = {"x": x, "y": np.asarray(ln.get_ydata(), dtype=float),
                                    "linestyle": ln.get_linestyle(), "color": to_hex(ln.get_color()),
                                    "marker": ln.get_marker()}
        for p in ax.patches:
            if isinstance(p, StepPatch):
                values, edges, _ = p.get_data()
                info["stairs"][p.get_label()] = {"values": np.asarray(values), "edges": np.asarray(edges),
                                                 "color": to_hex(p.get_edgecolor())}
        for c in ax.containers:
            if isinstance(c, BarContainer):
                info["bars"][c.get_label()] = {"heights": [r.get_height() for r in c.patches], "texts": []}
        texts = [t.get_text() for t in ax.texts]
        bar_sets = list(info["bars"].values())
        per = len(bar_sets[0]["heights"]) if bar_sets else 0
        for k, b in enumerate(bar_sets):  # bar_label adds one text per bar, container by container
            b["texts"] = texts[k * per:(k + 1) * per]
        from matplotlib.collections import PolyCollection
        info["bands"] = sum(isinstance(c, PolyCollection) for c in ax.collections)
        out["axes"][ax.get_gid() or f"ax{i}"] = info
    return out


# -- output --------------------------------------------------------------------------------------------------

def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()))


def figure_array(fig: Figure, width_px: Optional[int] = None) -> np.ndarray:
    """The rendered figure as an H×W×3 uint8 array (for SummaryWriter.add_image), `width_px` wide if given."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    old_dpi = fig.get_dpi()
    if width_px:
        fig.set_dpi(width_px / fig.get_figwidth())
    try:
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
    finally:
        fig.set_dpi(old_dpi)


def log_figures(log_dir: str | Path, figures: Mapping[str, Figure], step: int = 0,
                width_px: int = TB_WIDTH_PX, replace: bool = False) -> None:
    """Log figures as TensorBoard images under log_dir (a run of their own in the dashboard), `width_px` wide
    so that their text is legible in TensorBoard's image panel; replace: drop the folder's earlier event files
    first (a figures-only folder redrawn in place, where TensorBoard would otherwise show both versions)."""
    from torch.utils.tensorboard import SummaryWriter

    if replace:
        for old in Path(log_dir).glob("events.out.tfevents.*"):
            old.unlink()
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, fig in figures.items():
            writer.add_image(tag, figure_array(fig, width_px), global_step=step, dataformats="HWC")
    finally:
        writer.close()


__all__ = ["NEAR_ZERO", "TB_WIDTH_PX", "near_zero_fraction", "mean_abs", "linear_weights", "checkpoint_weights",
           "weight_stats", "curve_band", "epochs_run", "epochs_phrase", "curves_figure", "weights_figure",
           "sparsity_figure", "fold_figure", "plotted_series", "save_figure", "figure_array", "log_figures"]
