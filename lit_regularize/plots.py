"""Figures people look at: overlaid learning curves (seed bands), weight histograms, sparsity, k-fold curves.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot), so nothing depends on a display
or on global pyplot state, and they can be saved or logged to TensorBoard from any process.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lit_regularize.files import atomic_write

NEAR_ZERO = 1e-3  # |w| below this counts as "pruned" in the sparsity figure (the notebooks' threshold)


# -- numbers behind the figures ------------------------------------------------------------------------------


def _style_loss_axes(*axes: Any) -> None:
    """Epoch/loss labels, integer epoch ticks, light grid and a legend where something is drawn."""
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)

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
    """Mean |w| and near-zero fraction of the first layer and of all Linear weights together."""
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
    return np.arange(1, n + 1)[keep], np.nanmean(grid[:, keep], axis=0), np.nanstd(grid[:, keep], axis=0)


# -- figures -------------------------------------------------------------------------------------------------

def _figure(ncols: int, nrows: int = 1, width: float = 6.0, height: float = 4.2) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def curves_figure(histories: Mapping[str, Sequence[Mapping[str, Sequence]]], title: str = "") -> Figure:
    """Left: val/loss per epoch of every run (mean ± 1 std band over seeds); right: train/loss, same style."""
    fig, (ax_val, ax_train) = _figure(2)
    for i, (label, runs) in enumerate(histories.items()):
        color = f"C{i % 10}"
        for ax, key in ((ax_val, "val_loss"), (ax_train, "train_loss")):
            epochs, mean, std = curve_band([h.get(key) or [] for h in runs])
            if not len(epochs) or np.all(np.isnan(mean)):
                continue
            name = label if len(runs) == 1 else f"{label} (mean ± std of {len(runs)} seeds)"
            ax.plot(epochs, mean, color=color, marker="o", markersize=3, label=name)
            if len(runs) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            if key == "val_loss" and np.any(np.isfinite(mean)):
                best = int(np.nanargmin(mean))
                ax.plot(epochs[best], mean[best], color=color, marker="*", markersize=14, markeredgecolor="k")
    ax_val.set_title("validation loss (★ = best epoch)")
    ax_train.set_title("training loss (data term, without penalty)")
    _style_loss_axes(ax_val, ax_train)
    if title:
        fig.suptitle(title)
    return fig


def weights_figure(weights: Mapping[str, Sequence[np.ndarray]], bins: int = 100) -> Figure:
    """One column per run: first-layer weight histogram (top) and all Linear weights (bottom), log counts."""
    labels = list(weights)
    fig, axes = _figure(max(1, len(labels)), 2, width=4.2, height=3.4)
    axes = axes.reshape(2, -1)
    everything = {k: np.concatenate([w.ravel() for w in ws]) for k, ws in weights.items()}
    lim = max((float(np.abs(v).max()) for v in everything.values() if v.size), default=1.0) or 1.0
    edges = np.linspace(-lim, lim, bins + 1)  # shared bins so the columns compare directly
    for j, label in enumerate(labels):
        for row, (what, values) in enumerate((("first layer", weights[label][0].ravel()),
                                              ("all layers", everything[label]))):
            ax = axes[row, j]
            ax.hist(values, bins=edges, color=f"C{j % 10}", log=True)
            ax.set_title(f"{label}: {what}\nmean |w| {mean_abs(values):.4f}, "
                         f"|w|<{NEAR_ZERO:g}: {near_zero_fraction(values):.1%}", fontsize=9)
            ax.set_xlabel("weight")
            ax.grid(alpha=0.3)
        axes[0, j].set_ylabel("count (log)")
        axes[1, j].set_ylabel("count (log)")
    return fig


def sparsity_figure(stats: Mapping[str, Mapping[str, float]]) -> Figure:
    """Bars: fraction of near-zero weights (|w| < 1e-3), first layer and all layers, per run."""
    fig, (ax,) = _figure(1, width=max(5.0, 1.3 * len(stats) + 2))
    labels = list(stats)
    x = np.arange(len(labels))
    for k, (key, name) in enumerate((("near_zero_first", "first layer"), ("near_zero_all", "all layers"))):
        vals = [stats[lab][key] for lab in labels]
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, width=0.38, label=name)
        ax.bar_label(bars, labels=[f"{v:.1%}" for v in vals], fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylabel(f"fraction of weights with |w| < {NEAR_ZERO:g}")
    ax.set_title("weight sparsity (final weights)")
    ax.set_ylim(0, max(0.05, 1.15 * max((stats[lab][k] for lab in labels
                                         for k in ("near_zero_first", "near_zero_all")), default=0)))
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return fig


def fold_figure(folds: Sequence[Mapping[str, Sequence]], mean_val: Sequence[float], chosen_epoch: int,
                title: str = "") -> Figure:
    """Left: every fold's val/loss and their mean, a line at the chosen epoch; right: folds' train/loss."""
    fig, (ax_val, ax_train) = _figure(2)
    for i, h in enumerate(folds):
        n = len(h["val_loss"])
        ax_val.plot(range(1, n + 1), [_finite(v) for v in h["val_loss"]], color=f"C{i % 10}", alpha=0.6,
                    linewidth=1, label=f"fold {i}")
        ax_train.plot(range(1, len(h["train_loss"]) + 1), [_finite(v) for v in h["train_loss"]],
                      color=f"C{i % 10}", alpha=0.6, linewidth=1, label=f"fold {i}")
    ax_val.plot(range(1, len(mean_val) + 1), [_finite(v) for v in mean_val], color="k", linewidth=2.5,
                label="mean")
    ax_val.axvline(chosen_epoch, color="k", linestyle="--", linewidth=1, label=f"chosen epoch {chosen_epoch}")
    ax_val.set_title("validation loss per fold")
    ax_train.set_title("training loss per fold")
    _style_loss_axes(ax_val, ax_train)
    if title:
        fig.suptitle(title)
    return fig


# -- output --------------------------------------------------------------------------------------------------

def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()))


def figure_array(fig: Figure) -> np.ndarray:
    """The rendered figure as an H×W×3 uint8 array (for SummaryWriter.add_image)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_figures(log_dir: str | Path, figures: Mapping[str, Figure], step: int = 0) -> None:
    """Log figures as TensorBoard images under log_dir (a run of their own in the dashboard)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, fig in figures.items():
            writer.add_image(tag, figure_array(fig), global_step=step, dataformats="HWC")
    finally:
        writer.close()


__all__ = ["NEAR_ZERO", "near_zero_fraction", "mean_abs", "linear_weights", "checkpoint_weights",
           "weight_stats", "curve_band", "curves_figure", "weights_figure", "sparsity_figure", "fold_figure",
           "save_figure", "figure_array", "log_figures"]
