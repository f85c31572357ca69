"""K-fold validation, one rule for fit and sweeps: every fold runs all epochs, the epoch of the lowest mean
validation loss is chosen (the notebooks' rule), and a refit trains on the whole training pool for that many epochs.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from lit_regularize.config import Config
from lit_regularize.errors import ConfigError, DataError, RunInterrupted, UserError
from lit_regularize.summary import RunSummary

KFOLD_FIGURE = "kfold_curves.png"


def fold_configs(cfg: Config, parent: str) -> list[Config]:
    """One config per fold of (iterated) K-fold, all epochs run: fold r*K + k validates chunk k of reshuffle r."""
    return [cfg.replace(fold=f, name=f"{parent}/fold_{f}", early_stopping=False)
            for f in range(cfg.kfold * cfg.kfold_repeats)]


def refit_config(cfg: Config, epochs: int, name: str) -> Config:
    """Train on every example of the trial's training pool (no validation) for a fixed number of epochs.

    K-fold: the pool is what the folds split. Holdout: the union of the training and validation examples.
    """
    common = dict(fold=None, val_on_test=False, max_epochs=epochs, early_stopping=False, name=name)
    if cfg.kfold >= 2:
        return cfg.replace(kfold=0, val_size=0, **common)
    return cfg.replace(merge_val=True, **common)


def mean_curves(histories: Sequence[dict[str, list]]) -> dict[str, list[float]]:
    """Per-epoch mean (and sample std of val loss, as the tables) over folds, on the epochs every fold reached."""
    n = min(len(h["epoch"]) for h in histories)

    def grid(key: str) -> np.ndarray:
        rows = [[v if v is not None else math.nan for v in h[key][:n]] for h in histories]
        return np.array(rows, dtype=float)

    val = grid("val_loss")
    return {"epoch": list(range(1, n + 1)), "val_loss": val.mean(0).tolist(), "val_loss_std": val.std(0, ddof=1).tolist(),
            "val_acc": grid("val_acc").mean(0).tolist(), "train_loss": grid("train_loss").mean(0).tolist()}


def chosen_epoch(mean_val_loss: Sequence[float]) -> int:
    """1-based epoch of the lowest finite mean val loss."""
    vals = np.array(mean_val_loss, dtype=float)
    if not np.isfinite(vals).any():
        raise UserError("k-fold: the mean validation loss is never finite (training diverged); lower --lr")
    return int(np.nanargmin(np.where(np.isfinite(vals), vals, np.nan))) + 1


@dataclass
class FoldEvaluation:
    """The folds' summaries, their mean curves and the chosen epoch."""

    folds: list[RunSummary]
    curves: dict[str, list[float]]
    chosen_epoch: int

    @property
    def best_mean_val_loss(self) -> float:
        """The mean validation loss at the chosen epoch (a sweep's k-fold objective)."""
        return self.curves["val_loss"][self.chosen_epoch - 1]


def evaluate_folds(configs: Sequence[Config], run_fold: Optional[Callable[[Config], RunSummary]] = None,
                   workers: int = 1) -> FoldEvaluation:
    """Run every fold (as populations of the configs' `population` size where they can train together, else in
    order, or in `workers` processes) and apply the mean-curve rule."""
    from lit_regularize.population import groups as populations

    plan = populations(configs, configs[0].population) if run_fold is None else []
    if any(len(g) > 1 for g in plan):
        from lit_regularize.population import train_population
        from lit_regularize.run import run

        found: dict[int, RunSummary] = {}
        for g in plan:
            members = [configs[i] for i in g]
            out = (train_population(members, evaluate_test=False) if len(g) > 1
                   else [run(members[0], evaluate_test=False)])
            found.update(zip(g, out))
        summaries = [found[i] for i in range(len(configs))]
    elif run_fold is None and workers > 1:
        summaries = _run_parallel(configs, workers)
    else:
        if run_fold is None:
            from lit_regularize.run import run

            def run_fold(c: Config) -> RunSummary:
                return run(c, evaluate_test=False)
        summaries = [run_fold(c) for c in configs]
    curves = mean_curves([s.history for s in summaries])
    return FoldEvaluation(summaries, curves, chosen_epoch(curves["val_loss"]))


def _fold_worker(cfg: Config, threads: int) -> RunSummary:
    """One fold in a worker process (module level so that it pickles)."""
    import torch

    from lit_regularize.run import quiet_lightning, run

    torch.set_num_threads(threads)  # workers share the cores instead of each grabbing all of them
    quiet_lightning()
    return run(cfg, evaluate_test=False)


def _run_parallel(configs: Sequence[Config], workers: int) -> list[RunSummary]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: forking a process that already runs torch threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return list(pool.map(_fold_worker, configs, [threads] * len(configs)))
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise RunInterrupted(Path(configs[0].logdir) / Path(configs[0].run_name).parent,
                                 "KeyboardInterrupt") from None


def n_workers(cfg: Config, n_folds: int) -> int:
    """--kfold-workers (0 = one per core), at most one per fold."""
    wanted = cfg.kfold_workers or (os.cpu_count() or 1)
    return max(1, min(wanted, n_folds))


def format_curves(summary: RunSummary) -> str:
    """Table of per-fold and mean val loss per epoch; '*' marks the chosen epoch."""
    folds = summary.folds or []
    head = "epoch " + " ".join(f"fold_{f['fold']:<3d}" for f in folds) + "     mean"
    lines = ["val/loss per fold and mean over folds:", head]
    for i, e in enumerate(summary.history["epoch"]):
        cells = " ".join(f"{_num(f['history']['val_loss'][i]):>8s}" for f in folds)
        mark = " *" if e == summary.chosen_epoch else ""
        lines.append(f"{e:5d} {cells} {_num(summary.history['val_loss'][i]):>8s}{mark}")
    test = (summary.test or {}).get("last") or {}
    lines.append(f"chosen epoch {summary.chosen_epoch} (lowest mean val/loss); refit on all {summary.n_train} "
                 f"training examples for {summary.chosen_epoch} epochs: test loss {_num(test.get('loss'))}, "
                 f"test acc {_num(test.get('acc'))}")
    if summary.chosen_epoch == len(summary.history["epoch"]):
        lines.append("note: the mean val/loss still fell at the last epoch; more --max-epochs may do better")
    return "\n".join(lines)


def _num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def _remove_if_empty(path: Path, logdir: Path) -> None:
    """Remove a claimed version folder that nothing was written into, and the folders above it up to the logdir
    that are left empty, as if it had never been claimed."""
    logdir = logdir.absolute()
    folder = path.absolute()
    while folder == logdir or logdir in folder.parents:
        try:
            folder.rmdir()  # only ever removes an empty folder
        except OSError:
            return
        folder = folder.parent


def fold_splits(dm: Any, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, val) indices of every fold, from the DataModule's own split() (dm loaded, kfold set; fold restored)."""
    saved, out = dm.fold, []
    try:
        for f in range(n_folds):
            dm.fold = f
            out.append(dm.split())
    finally:
        dm.fold = saved
    return out


def fold_class_warning(dm: Any, kfold: int, repeats: int = 1) -> Optional[str]:
    """Check every fold of a loaded DataModule for the classes of its pool (the examples the folds split).

    A fold that would train without a class is a DataError naming the class, the fold and K; classes that some
    folds validate without (fewer examples than K, or unlucky chunks) give the warning returned, None if every fold
    validates every class."""
    labels = np.asarray(dm.train_labels()).astype(np.int64)
    names = list(dm.class_names or [])

    def name(c: int) -> str:
        return repr(names[c] if c < len(names) else str(c))

    n_folds = kfold * repeats
    unseen: dict[int, int] = {}  # class -> folds that validate without it
    sizes: dict[int, int] = {}  # class -> its examples in the pool (all in training where a fold lacks it)
    for f, (train, val) in enumerate(fold_splits(dm, n_folds)):
        trained, validated = set(np.unique(labels[train]).tolist()), set(np.unique(labels[val]).tolist())
        untrained = sorted(validated - trained)
        if untrained:
            c = untrained[0]
            raise DataError(f"--kfold {kfold}: fold_{f} would train without class {name(c)} (all "
                            f"{int(np.sum(labels[val] == c))} of its examples validate in that fold); use a smaller "
                            "--kfold, or more examples of it")
        for c in trained - validated:
            unseen[c] = unseen.get(c, 0) + 1
            sizes[c] = int(np.sum(labels[train] == c))
    if not unseen:
        return None
    worst = sorted(unseen.items(), key=lambda ck: (-ck[1], ck[0]))
    shown = ", ".join(f"{k} of {n_folds} folds validate without class {name(c)} ({sizes[c]} example"
                      f"{'s' if sizes[c] != 1 else ''})" for c, k in worst[:5])
    more = f" (and {len(worst) - 5} more classes)" if len(worst) > 5 else ""
    return (f"--kfold {kfold}: {shown}{more}: their val/loss and val/acc say nothing about it; fewer folds or more "
            "examples of it help")


def check_fold_classes(cfg: Config) -> None:
    """Before any fold trains: refuse folds that train without a class, warn once (stderr) about folds that
    validate without one (fold_class_warning)."""
    from lit_regularize.run import build_datamodule

    dm = build_datamodule(cfg.replace(fold=0))
    dm.setup("fit")
    note = fold_class_warning(dm, cfg.kfold, cfg.kfold_repeats)
    if note:
        print(f"warning: {note}", file=sys.stderr)


def run_kfold(cfg: Config, verbose: bool = True) -> RunSummary:
    """K-fold (optionally iterated) + refit at the mean curve's best epoch; writes summary.json and a figure."""
    from lit_regularize.plots import fold_figure, log_figures, render, save_figure
    from lit_regularize.rundir import RunDir
    from lit_regularize.run import run

    if cfg.kfold < 2:
        raise ConfigError(f"--kfold must be >= 2 for k-fold validation, got {cfg.kfold}")
    if cfg.val_on_test:
        raise ConfigError("--kfold and --val-on-test do not combine: folds validate on training data")
    check_fold_classes(cfg)  # before the run folder exists: a fold without a class is refused, not trained
    t_start = time.perf_counter()
    parent = RunDir.claim(cfg.logdir, cfg.run_name)
    base = os.path.relpath(parent.path, Path(cfg.logdir).absolute())
    configs = fold_configs(cfg, base)
    workers = n_workers(cfg, len(configs))
    if workers > 1:  # interleaved progress bars of several processes are unreadable
        configs = [c.replace(progress=False) for c in configs]
    try:
        result = evaluate_folds(configs, workers=workers)
    except UserError:
        _remove_if_empty(parent.path, Path(cfg.logdir))  # bad input fails in the first fold: leave no folder
        raise
    best = result.chosen_epoch
    refit = run(refit_config(cfg, best, f"{base}/refit"))
    curves = result.curves
    repeats = f" x {cfg.kfold_repeats}" if cfg.kfold_repeats > 1 else ""
    fig = fold_figure([s.history for s in result.folds], curves["val_loss"], best,
                      title=f"{cfg.run_name}: {cfg.kfold}-fold{repeats}, chosen epoch {best}")
    image = render(fig)  # drawn once, for the PNG and TensorBoard
    save_figure(image, parent.path / KFOLD_FIGURE)
    log_figures(refit.run_dir, {"kfold/curves": image})
    summary = RunSummary(
        status="completed", kind="kfold", config=cfg.to_dict(), seed=cfg.seed, n_params=refit.n_params,
        stop_reason="chosen_epoch", epochs_run=best, best_epoch=best, best_val_loss=result.best_mean_val_loss,
        best_val_acc=curves["val_acc"][best - 1],
        # the mean curves in the usual history layout, so comparisons read a k-fold summary like any run's
        history={"epoch": curves["epoch"], "train_loss": curves["train_loss"], "val_loss": curves["val_loss"],
                 "val_acc": curves["val_acc"]},
        test={"last": refit.test["last"]} if refit.test else None,  # the refit has no validation: no "best"
        last_checkpoint=parent.rel(refit.path(refit.last_checkpoint)), exit_code=0,
        folds=[{"fold": c.fold, "run_dir": parent.rel(s.run_dir), "history": s.history, "best_epoch": s.best_epoch,
                "best_val_loss": s.best_val_loss, "wall_time": s.wall_time} for c, s in zip(configs, result.folds)],
        chosen_epoch=best, std_val_loss=curves["val_loss_std"], n_train=len(RunDir(refit.run_dir).read_split()
                                                                              ["train_idx"]),
        refit_dir=parent.rel(refit.run_dir), wall_time=time.perf_counter() - t_start, run_dir=parent.path)
    parent.write_config(cfg)
    summary.write()
    if verbose:
        print(format_curves(summary))
        print(f"figure:     {parent.path / KFOLD_FIGURE}")
    return summary


__all__ = ["fold_configs", "refit_config", "run_kfold", "evaluate_folds", "FoldEvaluation", "mean_curves",
           "chosen_epoch", "format_curves", "n_workers", "fold_splits", "fold_class_warning",
           "check_fold_classes", "KFOLD_FIGURE"]
