"""K-fold validation: one run per fold, the mean curve picks the epoch count, then a refit on all training data."""
from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lit_regularize.config import Config
from lit_regularize.errors import ConfigError, UserError
from lit_regularize.files import write_json

KFOLD_FIGURE = "kfold_curves.png"

# The refit trains without validation by design; Lightning warns about its empty val loader.
warnings.filterwarnings("ignore", message=".*Total length of `list` across ranks is zero.*")


def fold_configs(cfg: Config) -> list[Config]:
    """One config per fold of (iterated) K-fold: fold r*K + k validates chunk k of reshuffle r."""
    return [cfg.replace(fold=f, name=f"{cfg.run_name}/fold_{f}") for f in range(cfg.kfold * cfg.kfold_repeats)]


def refit_config(cfg: Config, epochs: int, name: str) -> Config:
    """Train on every training example (no validation split) for a fixed number of epochs."""
    return cfg.replace(kfold=0, fold=None, val_size=0, val_on_test=False, max_epochs=epochs, early_stopping=False,
                       name=name)


def _fold_worker(cfg: Config, threads: int) -> dict[str, Any]:
    """One fold in a worker process (module level so that it pickles)."""
    import torch

    from lit_regularize.run import RunInterrupted, quiet_lightning, run

    torch.set_num_threads(threads)  # workers share the cores instead of each grabbing all of them
    quiet_lightning()
    try:
        return run(cfg)
    except RunInterrupted as e:  # its custom __init__ does not survive pickling; the parent re-raises
        return {"status": "interrupted", "log_dir": str(e.log_dir)}


def _workers(cfg: Config, n_folds: int) -> int:
    if cfg.kfold_workers < 0:
        raise ConfigError(f"--kfold-workers must be >= 0 (0 = one per CPU core), got {cfg.kfold_workers}")
    wanted = cfg.kfold_workers or (os.cpu_count() or 1)
    return max(1, min(wanted, n_folds))


def run_folds(configs: Sequence[Config], workers: int = 1) -> list[dict[str, Any]]:
    """run() every fold config, in this process or in `workers` spawned processes; summaries in fold order."""
    from lit_regularize.run import RunInterrupted, run

    if workers <= 1:
        return [run(c) for c in configs]
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: forking a process that already runs torch threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            summaries = list(pool.map(_fold_worker, configs, [threads] * len(configs)))
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise RunInterrupted(Path(configs[0].logdir) / Path(configs[0].run_name).parent,
                                 "KeyboardInterrupt") from None
    for s in summaries:
        if s.get("status") == "interrupted":
            raise RunInterrupted(Path(s["log_dir"]), "interrupted in a worker")
    return summaries


def mean_curves(histories: Sequence[dict[str, list]]) -> dict[str, list[float]]:
    """Per-epoch mean (and std of val loss) over folds, on the epochs every fold reached."""
    n = min(len(h["epoch"]) for h in histories)

    def grid(key: str) -> np.ndarray:
        rows = [[v if v is not None else math.nan for v in h[key][:n]] for h in histories]
        return np.array(rows, dtype=float)

    val = grid("val_loss")
    return {"epoch": list(range(1, n + 1)), "val_loss": val.mean(0).tolist(),
            "val_loss_std": val.std(0).tolist(), "val_acc": grid("val_acc").mean(0).tolist(),
            "train_loss": grid("train_loss").mean(0).tolist()}


def chosen_epoch(mean_val_loss: Sequence[float]) -> int:
    """1-based epoch of the lowest finite mean val loss."""
    vals = np.array(mean_val_loss, dtype=float)
    if not np.isfinite(vals).any():
        raise UserError("k-fold: the mean validation loss is never finite (training diverged); lower --lr")
    return int(np.nanargmin(np.where(np.isfinite(vals), vals, np.nan))) + 1


def format_curves(summary: dict[str, Any]) -> str:
    """Table of per-fold and mean val loss per epoch; '*' marks the chosen epoch."""
    folds = summary["folds"]
    head = "epoch " + " ".join(f"fold_{f['fold']:<3d}" for f in folds) + "     mean"
    lines = ["val/loss per fold and mean over folds:", head]
    for i, e in enumerate(summary["history"]["epoch"]):
        cells = " ".join(f"{_num(f['history']['val_loss'][i]):>8s}" for f in folds)
        mark = " *" if e == summary["chosen_epoch"] else ""
        lines.append(f"{e:5d} {cells} {_num(summary['mean_val_loss'][i]):>8s}{mark}")
    test = summary["test"]["last"]
    lines.append(f"chosen epoch {summary['chosen_epoch']} (lowest mean val/loss); refit on all "
                 f"{summary['n_train']} training examples for {summary['chosen_epoch']} epochs: "
                 f"test loss {test['loss']:.4f}, test acc {test['acc']:.4f}")
    if summary["chosen_epoch"] == len(summary["history"]["epoch"]):
        lines.append("note: the mean val/loss still fell at the last epoch; more --max-epochs may do better")
    return "\n".join(lines)


def _num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def run_kfold(cfg: Config, verbose: bool = True) -> dict[str, Any]:
    """K-fold (optionally iterated) + refit at the mean curve's best epoch; writes summary.json + a figure."""
    from lit_regularize.plots import fold_figure, log_figures, save_figure
    from lit_regularize.run import SUMMARY, run

    if cfg.kfold < 2:
        raise ConfigError(f"--kfold must be >= 2 for k-fold validation, got {cfg.kfold}")
    if cfg.val_on_test:
        raise ConfigError("--kfold and --val-on-test do not combine: folds validate on training data")
    t_start = time.perf_counter()
    # Folds always run all epochs: the mean curve needs every fold at every epoch (NaN/inf still stops a run).
    configs = [c.replace(early_stopping=False) for c in fold_configs(cfg)]
    workers = _workers(cfg, len(configs))
    if workers > 1:  # interleaved progress bars of several processes are unreadable
        configs = [c.replace(progress=False) for c in configs]
    fold_summaries = run_folds(configs, workers)
    histories = [s["history"] for s in fold_summaries]
    curves = mean_curves(histories)
    best = chosen_epoch(curves["val_loss"])
    refit = run(refit_config(cfg, best, f"{cfg.run_name}/refit"))
    parent = Path(cfg.logdir) / cfg.run_name
    repeats = f" x {cfg.kfold_repeats}" if cfg.kfold_repeats > 1 else ""
    fig = fold_figure(histories, curves["val_loss"], best,
                      title=f"{cfg.run_name}: {cfg.kfold}-fold{repeats}, chosen epoch {best}")
    figure = save_figure(fig, parent / KFOLD_FIGURE)
    log_figures(refit["log_dir"], {"kfold/curves": fig})
    summary: dict[str, Any] = {
        "status": "completed", "kind": "kfold", "stop_reason": "chosen_epoch", "config": cfg.to_dict(),
        "seed": cfg.seed, "n_params": refit["n_params"], "log_dir": str(parent), "epochs_run": best,
        "n_train": _n_train(refit),
        "folds": [{"fold": c.fold, "log_dir": s["log_dir"], "history": s["history"],
                   "best_epoch": s["best_epoch"], "best_val_loss": s["best_val_loss"],
                   "wall_time": s["wall_time"]}
                  for c, s in zip(configs, fold_summaries)],
        "mean_val_loss": curves["val_loss"], "std_val_loss": curves["val_loss_std"],
        "mean_val_acc": curves["val_acc"], "mean_train_loss": curves["train_loss"], "chosen_epoch": best,
        "best_epoch": best, "best_val_loss": curves["val_loss"][best - 1],
        "best_val_acc": curves["val_acc"][best - 1],
        # the mean curves in the usual history layout, so comparisons can read a k-fold summary like any run's
        "history": {"epoch": curves["epoch"], "train_loss": curves["train_loss"],
                    "val_loss": curves["val_loss"], "val_acc": curves["val_acc"]},
        "test": {"last": refit["test"]["last"]},  # the refit has no validation, so no "best" checkpoint
        "refit": {k: refit[k] for k in ("log_dir", "epochs_run", "history", "last_checkpoint", "wall_time")},
        "best_checkpoint": None, "last_checkpoint": refit["last_checkpoint"], "figure": str(figure),
        "workers": workers, "wall_time": time.perf_counter() - t_start,
    }
    write_json(parent / SUMMARY, summary)
    if verbose:
        print(format_curves(summary))
        print(f"figure:     {figure}")
    return summary


def _n_train(refit: dict[str, Any]) -> int:
    """Training examples of the refit (from its saved split)."""
    split = Path(refit["log_dir"]) / "split.npz"
    with np.load(split) as f:
        return int(len(f["train_idx"]))


__all__ = ["fold_configs", "refit_config", "run_kfold", "run_folds", "mean_curves", "chosen_epoch", "format_curves",
           "KFOLD_FIGURE"]
