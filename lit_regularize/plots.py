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
# log10|w| histograms start here: an L1 run's weights reach 1e-44 (float32's subnormals), which squeezed the useful
# -5..0 into a sliver; everything smaller (exact zeros too) is counted in the first bin. Three decades below
# NEAR_ZERO keeps "how far below the threshold" readable.
LOG10_FLOOR = -6.0
STAR_SIZE = 13  # points; stars closer than about one star width are moved apart sideways (_dodge)
SAVE_DPI = 110  # the PNG files' resolution
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
    """The Linear weight matrices of a RegularizedMLP state dict, in layer order (2-D `net.*.weight`; a
    spectral-normed layer's as it computes with them)."""
    from lit_regularize.regularizers.layers import effective_state_dict

    return [v.detach().cpu().float().numpy() for k, v in effective_state_dict(state_dict).items()
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


def seeds_phrase(seeds: Sequence[Optional[int]]) -> str:
    """'seed 7', 'seeds 7–11' (consecutive) or 'seeds 3, 7, 9': the seeds a figure shows."""
    known = sorted({int(s) for s in seeds if s is not None})
    if not known:
        return "seed unknown"
    if len(known) == 1:
        return f"seed {known[0]}"
    if known == list(range(known[0], known[-1] + 1)) and len(known) > 2:
        return f"seeds {known[0]}–{known[-1]}"
    return "seeds " + ", ".join(map(str, known))


def _seeds_title(seeds: Optional[Mapping[str, Sequence[Optional[int]]]]) -> str:
    """The seeds every run shows, for a title ('' when unknown); per run when they differ."""
    if not seeds:
        return ""
    phrases = {label: seeds_phrase(v) for label, v in seeds.items()}
    if len(set(phrases.values())) == 1:
        return next(iter(phrases.values()))
    return "; ".join(f"{label}: {p}" for label, p in phrases.items())


def seed_bests(histories: Sequence[Mapping[str, Sequence]]) -> list[tuple[int, float]]:
    """(1-based epoch, val loss) of each history's lowest finite val loss (its first, as summary.best_of)."""
    out = []
    for h in histories:
        vals = [(v, i) for i, v in enumerate(_finite(x) for x in h.get("val_loss") or []) if math.isfinite(v)]
        if vals:
            v, i = min(vals)
            out.append((i + 1, v))
    return out


def _dodge(xs: Sequence[float], ys: Sequence[float], xspan: float, yspan: float,
           width: float = 0.04, height: float = 0.06) -> list[float]:
    """x positions for markers at (xs, ys) such that none hides another: markers closer than `width` of xspan and
    `height` of yspan (about one star at the figure's size) form a group, spread sideways around its centre."""
    n = len(xs)
    group = list(range(n))  # union of overlapping markers

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i
    for i in range(n):
        for j in range(i + 1, n):
            if abs(xs[i] - xs[j]) < width * xspan and abs(ys[i] - ys[j]) < height * max(yspan, 1e-12):
                group[root(j)] = root(i)
    out = list(map(float, xs))
    for r in {root(i) for i in range(n)}:
        members = [i for i in range(n) if root(i) == r]
        if len(members) > 1:
            centre = float(np.mean([xs[i] for i in members]))
            for k, i in enumerate(members):
                out[i] = centre + (k - (len(members) - 1) / 2) * width * xspan
    return out


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
                  epochs_note: Optional[str] = None,
                  seeds: Optional[Mapping[str, Sequence[Optional[int]]]] = None) -> Figure:
    """Learning curves of every run; `histories` maps a run label to its histories (one per seed), `seeds` the
    label to those runs' seeds (named in the title).

    Left: training loss (dashed) and validation loss (solid) in the run's colour on one axis, so the gap
    between them (overfitting) is visible; with several seeds the lines are means and the validation loss has a
    ± 1 std band. ★ = the best epoch as the tables define it: each seed's epoch of lowest validation loss and that
    loss, averaged over seeds (one seed: its own minimum); stars that would hide each other are moved sideways.
    Right: training (dashed) and validation accuracy per run, same colours. The title ends with the epochs the
    runs actually ran ("20 epochs", "3–20 epochs"), `epochs_note`, and the seeds shown.
    """
    fig, (ax_loss, ax_acc) = _figure(2, width=6.0, height=4.4)
    ax_loss.set_gid("loss")
    ax_acc.set_gid("accuracy")
    labels = list(histories)
    colors = _colors(len(labels))
    run_handles = []
    stars: list[tuple[str, str, float, float]] = []  # (label, colour, mean best epoch, mean best val loss)
    most_seeds = 0
    last_epoch = 0
    for label, color in zip(labels, colors):
        runs = list(histories[label])
        most_seeds = max(most_seeds, len(runs))
        last_epoch = max([last_epoch] + [epochs_run(h) for h in runs])
        summary = _plot_run(ax_loss, ax_acc, label, color, runs, stars)
        run_handles.append(Line2D([], [], color=color, linewidth=3, label=summary))
    moved = _draw_stars(ax_loss, stars, last_epoch)
    band = "\nlines: mean over seeds, shaded: ± 1 std" if most_seeds > 1 else ""
    star = ("★ = best epoch (lowest val loss; with seeds: mean of each seed's best)" if most_seeds > 1
            else "★ = best epoch (lowest val loss)") + ("\n★ side by side where they met" if moved else "")
    # (one line of its own: appended, the line outgrew the loss panel and was cut off at its left edge)
    ax_loss.set_title("loss: training (dashed, data term) vs validation (solid)\n" + star + band, fontsize=10)
    ax_loss.set_ylabel("loss")
    ax_acc.set_title("accuracy: training (dashed) vs validation (solid)" + band, fontsize=10)
    ax_acc.set_ylabel("accuracy")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for ax in (ax_loss, ax_acc):
        _epoch_axis(ax, last_epoch)
    _legend_below(fig, run_handles, ncol_max=2)
    every = [h for runs in histories.values() for h in runs]
    when = ", ".join(x for x in (epochs_phrase(every), epochs_note, _seeds_title(seeds)) if x)
    fig.suptitle(f"{title} ({when})" if title else when, fontsize=13)
    return fig


def _curve(ax: Any, runs: Sequence[Mapping[str, Sequence]], key: str, color: str, label: str, what: str) -> None:
    """The mean over seeds of one per-epoch key: validation solid with a ± 1 std band (several seeds), training
    dashed (a dot when there is one epoch)."""
    epochs, mean, std = curve_band([h.get(key) or [] for h in runs])
    if not (len(epochs) and np.any(np.isfinite(mean))):
        return
    if key.startswith("val"):
        ax.plot(epochs, mean, color=color, linestyle="-", marker="o", markersize=3, linewidth=1.8,
                label=f"{label}: {what}")
        if len(runs) > 1:
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
    else:
        ax.plot(epochs, mean, color=color, linestyle="--", linewidth=1.5, label=f"{label}: {what}",
                marker="o" if len(epochs) == 1 else "None", markersize=3)


def _plot_run(ax_loss: Any, ax_acc: Any, label: str, color: str, runs: Sequence[Mapping[str, Sequence]],
              stars: list) -> str:
    """One run's curves (mean over its seeds); appends its best-epoch star; returns its legend text."""
    seeds = len(runs)
    summary = label if seeds == 1 else f"{label} (mean of {seeds} seeds)"
    _curve(ax_loss, runs, "val_loss", color, label, "val loss")
    bests = seed_bests(runs)
    if bests:
        best_epoch, best_val = float(np.mean([e for e, _ in bests])), float(np.mean([v for _, v in bests]))
        stars.append((label, color, best_epoch, best_val))
        shown = f"{best_epoch:.0f}" if len(bests) == 1 else f"{best_epoch:.1f}"
        summary += f" — best epoch {shown}, val loss {best_val:.3f}"
        accs = [_value_at(h.get("val_acc"), e) for h in runs for e, _ in seed_bests([h])]
        if all(math.isfinite(a) for a in accs):
            summary += f", acc {np.mean(accs):.1%}"
    _curve(ax_loss, runs, "train_loss", color, label, "train loss")
    _curve(ax_acc, runs, "train_acc", color, label, "train acc")
    _curve(ax_acc, runs, "val_acc", color, label, "val acc")
    return summary


def _value_at(values: Optional[Sequence], epoch: int) -> float:
    """values[epoch - 1] as a finite float, NaN when missing."""
    return _finite(values[epoch - 1]) if values and len(values) >= epoch else float("nan")


def _draw_stars(ax: Any, stars: Sequence[tuple[str, str, float, float]], last_epoch: int) -> bool:
    """The best-epoch stars, moved sideways where two would hide each other (the legend has the exact epoch);
    whether any was moved."""
    if not stars:
        return False
    ys = [y for *_, y in stars]
    lines = [ln.get_ydata() for ln in ax.lines]
    finite = [float(v) for ydata in lines for v in np.asarray(ydata, dtype=float) if math.isfinite(v)] + ys
    xs = _dodge([x for _, _, x, _ in stars], ys, max(last_epoch, 1), max(finite) - min(finite))
    for (label, color, _, y), x in zip(stars, xs):
        ax.plot([x], [y], color=color, linestyle="none", marker="*", markersize=STAR_SIZE, markeredgecolor="k",
                zorder=5, label=f"{label}: best epoch")
    return any(x != star[2] for x, star in zip(xs, stars))


def _layer_names(n: int) -> list[str]:
    return [f"Linear layer {i + 1}" for i in range(n - 1)] + ["output layer"] if n else []


def weights_figure(weights: Mapping[str, Sequence[Sequence[np.ndarray]]], bins: int = 80,
                   which: str = "best checkpoint",
                   seeds: Optional[Mapping[str, Sequence[Optional[int]]]] = None) -> Figure:
    """One row per Linear layer (layer 1 at the top, output layer last), runs overlaid in their colours.

    `weights` maps a run label to its seeds' weights (one list of layer matrices per seed); every seed is shown:
    a run's histogram pools its seeds' weights (% of all of them). Left column: histogram of the weights (log
    scale for big layers), bins shared by the runs. Right column: histogram of log10 |w| clipped at LOG10_FLOOR
    (the first bin holds every smaller |w|, exact zeros included) with the near-zero threshold marked. Runs with
    fewer layers leave middle rows out; output layers share the last row. `which` names the weights shown, the
    seeds are named in the title.
    """
    labels = list(weights)
    pooled = {lab: _pool_layers(weights[lab]) for lab in labels}
    n_rows = max((len(ws) for ws in pooled.values()), default=0) or 1
    names = _layer_names(n_rows)
    colors = dict(zip(labels, _colors(len(labels))))
    fig, axes = _figure(2, n_rows, width=6.0, height=2.9)
    axes = axes.reshape(n_rows, 2)

    rows: list[list[tuple[str, tuple[int, ...], np.ndarray]]] = [[] for _ in range(n_rows)]  # (run, shape, values)
    for lab in labels:
        ws = pooled[lab]
        for k, (shape, values) in enumerate(ws):
            rows[n_rows - 1 if k == len(ws) - 1 else k].append((lab, shape, values))
    for row in range(n_rows):
        _weights_row(axes[row], names[row], rows[row], colors, bins)
    _legend_below(fig, [Line2D([], [], color=colors[lab], linewidth=3, label=lab) for lab in labels], ncol_max=6)
    shown = _seeds_title(seeds)
    most = max((len(v) for v in weights.values()), default=0)
    pooled_note = f", {most} seeds pooled per run" if most > 1 else ""
    fig.suptitle(f"weight distributions per layer — {which}" + (f" ({shown}{pooled_note})" if shown else ""),
                 fontsize=13)
    return fig


def _pool_layers(runs: Sequence[Sequence[np.ndarray]]) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Per layer: (one seed's shape, every seed's weights of that layer as one flat float64 array)."""
    n = max((len(ws) for ws in runs), default=0)
    out = []
    for k in range(n):
        layer = [np.asarray(ws[k], dtype=np.float64) for ws in runs if len(ws) > k]
        out.append((layer[0].shape, np.concatenate([w.ravel() for w in layer])))
    return out


def _weights_row(axes: Sequence[Any], name: str, members: Sequence[tuple[str, tuple[int, ...], np.ndarray]],
                 colors: Mapping[str, str], bins: int) -> None:
    """One layer's row: histogram of w (left) and of log10 |w| clipped at LOG10_FLOOR (right)."""
    ax_w, ax_log = axes
    ax_w.set_gid(f"{name}: w")
    ax_log.set_gid(f"{name}: log10|w|")
    # shapes as in → out (a Linear weight is stored out × in); sizes of one seed's layer
    shapes = list(dict.fromkeys(f"{s[-1]}→{s[0]}" if len(s) == 2 else str(s) for _, s, _ in members))
    sizes = list(dict.fromkeys(f"{int(np.prod(s)):,}" for _, s, _ in members))
    biggest = max((int(np.prod(s)) for _, s, _ in members), default=0)
    row_bins = int(np.clip(2 * math.sqrt(biggest), 10, bins))  # a 16-weight layer gets 10 bins, not 80
    lim = max((float(np.abs(v).max()) for _, _, v in members if v.size), default=1.0) or 1.0
    edges = np.linspace(-lim, lim, row_bins + 1)
    log_edges = _log_edges([v for _, _, v in members], row_bins)
    for lab, _, v in members:
        if not v.size:
            continue
        pct = np.full(v.size, 100.0 / v.size)  # % of this run's weights of the layer, so different widths compare
        counts, _ = np.histogram(v, bins=edges, weights=pct)
        ax_w.stairs(counts, edges, color=colors[lab], linewidth=1.6, label=lab)
        log_counts, _ = np.histogram(clipped_log10(v), bins=log_edges, weights=pct)
        ax_log.stairs(log_counts, log_edges, color=colors[lab], linewidth=1.6,
                      label=f"{lab}: {near_zero_fraction(v):.1%} below {NEAR_ZERO:g}")
    if biggest >= 1000:  # tails of a big layer only show on a log scale
        ax_w.set_yscale("log")
        ax_w.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax_w.set_ylabel("% of weights (log scale)")
    else:
        ax_w.set_ylabel("% of weights")
    ax_w.set_xlabel("weight w")
    ax_w.set_title(f"{name} ({' / '.join(shapes)}: {' / '.join(sizes)} weights)", fontsize=10, loc="left")
    ax_log.axvline(math.log10(NEAR_ZERO), color="k", linestyle=":", linewidth=1.2, gid="vline")
    ax_log.set_xlabel(f"log10 |w|   (dotted: |w| = {NEAR_ZERO:g}; clipped at {LOG10_FLOOR:g}: the first bin "
                      f"holds every |w| < 1e{LOG10_FLOOR:.0f}, zeros too)", fontsize=8)
    ax_log.set_ylabel("% of weights")
    ax_log.set_title(f"{name}: magnitude", fontsize=10, loc="left")
    if members:
        ax_log.legend(fontsize=8, loc="best", framealpha=0.85)
    for ax in (ax_w, ax_log):
        ax.grid(alpha=0.3)


def clipped_log10(w: np.ndarray, floor: float = LOG10_FLOOR) -> np.ndarray:
    """log10 |w| with everything below 10**floor (exact zeros included) set to floor."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return np.maximum(np.log10(a), floor)


def _log_edges(values: Sequence[np.ndarray], n_bins: int) -> np.ndarray:
    """Shared log10 |w| bin edges: from the floor (or the smallest |w|, if larger; never above one decade under
    NEAR_ZERO) to the largest |w|, in whole decades."""
    logs = [clipped_log10(v) for v in values if v.size]
    lo = min((float(x.min()) for x in logs), default=math.log10(NEAR_ZERO) - 1)
    lo = min(max(lo, LOG10_FLOOR), math.log10(NEAR_ZERO) - 1)
    hi = max((float(x.max()) for x in logs), default=0.0)
    return np.linspace(math.floor(lo), max(math.ceil(hi + 1e-9), math.floor(lo) + 1), n_bins + 1)


def sparsity_figure(stats: Mapping[str, Sequence[Mapping[str, float]]], which: str = "best checkpoint",
                    seeds: Optional[Mapping[str, Sequence[Optional[int]]]] = None) -> Figure:
    """Left: % of weights with |w| < 1e-3 (axis and bar labels in %); right: mean |w|; first layer and all
    Linear layers per run. `stats` maps a run label to its seeds' `weight_stats` (fractions 0..1): bars are the
    mean over seeds, dots each seed; the seeds are named in the title."""
    labels = list(stats)
    fig, (ax_pct, ax_abs) = _figure(2, width=max(4.5, 1.0 * len(labels) + 2.5), height=4.4)
    ax_pct.set_gid("near zero %")
    ax_abs.set_gid("mean |w|")
    x = np.arange(len(labels))
    parts = (("first", "first layer", "C0"), ("all", "all Linear layers", "C1"))
    tops = {ax_pct: 0.0, ax_abs: 0.0}
    for k, (key, name, color) in enumerate(parts):
        for ax, stat, scale, spec in ((ax_pct, f"near_zero_{key}", 100.0, "{:.1f}%"),
                                      (ax_abs, f"mean_abs_w_{key}", 1.0, "{:.3g}")):
            per_seed = [[scale * _finite(st.get(stat)) for st in stats[lab]] for lab in labels]
            means = [float(np.nanmean(v)) if any(map(math.isfinite, v)) else math.nan for v in per_seed]
            xs = x + (k - 0.5) * 0.38
            ax.bar(xs, means, width=0.38, color=color, label=name)
            for xi, mean, values in zip(xs, means, per_seed):  # the mean above the bar and above its seeds' dots
                top = max([v for v in values + [mean] if math.isfinite(v)], default=0.0)
                ax.annotate(spec.format(mean) if math.isfinite(mean) else "–", (xi, top), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=8)
            if max(map(len, per_seed), default=0) > 1:  # each seed as a dot on its run's bar
                ax.plot([xi for xi, v in zip(xs, per_seed) for _ in v], [y for v in per_seed for y in v],
                        linestyle="none", marker="o", markersize=3.5, markerfacecolor="white", markeredgecolor="k",
                        zorder=4, label=f"{name}: each seed")
            tops[ax] = max([tops[ax]] + [v for vs in per_seed for v in vs if math.isfinite(v)])
    ax_pct.set_ylim(0, min(108.0, max(5.0, 1.18 * tops[ax_pct])))
    ax_pct.yaxis.set_major_formatter(PercentFormatter(xmax=100.0, decimals=0))
    ax_pct.set_ylabel(f"% of weights with |w| < {NEAR_ZERO:g}")
    ax_pct.set_title(f"near-zero weights (|w| < {NEAR_ZERO:g})", fontsize=11)
    ax_abs.set_ylim(0, 1.18 * tops[ax_abs] if tops[ax_abs] > 0 else 1.0)
    ax_abs.set_ylabel("mean |w|")
    ax_abs.set_title("mean |w|", fontsize=11)
    for ax in (ax_pct, ax_abs):
        ax.set_xticks(x, labels, rotation=20 if max((len(s) for s in labels), default=0) > 10 else 0)
        ax.grid(alpha=0.3, axis="y")
    handles = [Patch(color=c, label=name) for _, name, c in parts]
    most = max((len(v) for v in stats.values()), default=0)
    if most > 1:
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="k",
                              label="one seed (bar: mean over seeds)"))
    _legend_below(fig, handles)
    shown = _seeds_title(seeds)
    fig.suptitle(f"weight sparsity — {which}" + (f" ({shown})" if shown else ""), fontsize=13)
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
        for k, b in enumerate(bar_sets):  # one label per bar, container by container
            b["texts"] = texts[k * per:(k + 1) * per]
        from matplotlib.collections import PolyCollection
        info["bands"] = sum(isinstance(c, PolyCollection) for c in ax.collections)
        out["axes"][ax.get_gid() or f"ax{i}"] = info
    return out


# -- output --------------------------------------------------------------------------------------------------

def save_figure(fig: Figure | np.ndarray, path: str | Path, dpi: int = SAVE_DPI) -> Path:
    """Write a PNG atomically (a reader never sees half a file): a figure, or its image from `render`."""
    buf = io.BytesIO()
    if isinstance(fig, np.ndarray):
        from PIL import Image

        Image.fromarray(fig).save(buf, format="png")
    else:
        fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()))


def render(fig: Figure, dpi: int = SAVE_DPI) -> np.ndarray:
    """The figure drawn once at `dpi`, as an H x W x 4 uint8 array: what save_figure writes and log_figures logs,
    so a report draws each figure once (a constrained-layout draw is 0.2-0.5 s, and there were two per figure)."""
    return figure_array(fig, round(fig.get_figwidth() * dpi), channels=4)


def figure_array(fig: Figure, width_px: Optional[int] = None, channels: int = 3) -> np.ndarray:
    """The rendered figure as an H×W×3 uint8 array (for SummaryWriter.add_image), `width_px` wide if given
    (channels=4: with the alpha channel)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    old_dpi = fig.get_dpi()
    if width_px:
        fig.set_dpi(width_px / fig.get_figwidth())
    try:
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :channels].copy()
    finally:
        fig.set_dpi(old_dpi)


def _tensorboard_image(fig: Figure | np.ndarray, width_px: int) -> np.ndarray:
    """An H x W x 3 image `width_px` wide: a figure drawn at that width, or a rendered image resampled to it."""
    if not isinstance(fig, np.ndarray):
        return figure_array(fig, width_px)
    if fig.shape[1] == width_px:
        return fig[..., :3]
    from PIL import Image

    height = round(fig.shape[0] * width_px / fig.shape[1])
    return np.asarray(Image.fromarray(fig[..., :3]).resize((width_px, height), Image.Resampling.LANCZOS))


def log_figures(log_dir: str | Path, figures: Mapping[str, Figure | np.ndarray], step: int = 0,
                width_px: int = TB_WIDTH_PX, replace: bool = False) -> None:
    """Log figures (or their images from `render`, resampled) as TensorBoard images under log_dir (a run of their
    own in the dashboard), `width_px` wide so that their text is legible in TensorBoard's image panel; replace:
    drop the folder's earlier event files first (a figures-only folder redrawn in place, where TensorBoard would
    otherwise show both versions)."""
    from torch.utils.tensorboard import SummaryWriter

    if replace:
        for old in Path(log_dir).glob("events.out.tfevents.*"):
            old.unlink()
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, fig in figures.items():
            writer.add_image(tag, _tensorboard_image(fig, width_px), global_step=step, dataformats="HWC")
    finally:
        writer.close()


__all__ = ["NEAR_ZERO", "LOG10_FLOOR", "TB_WIDTH_PX", "seeds_phrase", "seed_bests", "clipped_log10",
           "near_zero_fraction", "mean_abs", "linear_weights", "checkpoint_weights",
           "weight_stats", "curve_band", "epochs_run", "epochs_phrase", "curves_figure", "weights_figure",
           "sparsity_figure", "fold_figure", "plotted_series", "save_figure", "render", "figure_array",
           "log_figures"]
