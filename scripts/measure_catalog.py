"""Measure the modern regularizer catalog (issue 23) on real data; prints and writes the tables of
docs/regularizers.md.

Runs the shipped studies `modern_imdb` (IMDB holdout, 20 epochs, early stopping) and `modern_fmnist` (Fashion-MNIST,
100 images per class, up to 60 epochs, early stopping) with `lr.compare(...)` over --seeds seeds, then scores every
run's best checkpoint on the test set once more for its calibration: the expected calibration error (15 equal-width
confidence bins, top-label, torchmetrics' `calibration_error`, norm l1) of the test predictions.

    python scripts/measure_catalog.py --data-dir /work/shared/data --out /tmp/catalog --seeds 3

Finished identical runs under --out are reused (as `compare` does), so a cut measurement continues where it was.
Writes <out>/<study>/ (compare's figures and tables) and <out>/catalog.md / catalog.json (the summary tables).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

STUDIES = {"imdb": "modern_imdb", "fmnist": "modern_fmnist"}
N_BINS = 15  # the ECE bins of Guo et al. (2017)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder holding imdb.npz and FashionMNIST/raw")
    p.add_argument("--out", default="catalog", help="output folder (runs, figures, tables)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per regularizer (default 3)")
    p.add_argument("--only", nargs="+", choices=sorted(STUDIES), default=sorted(STUDIES),
                   help="which studies to run (default both)")
    return p.parse_args(argv)


def test_predictions(log_dir: Path, cache: dict) -> tuple[Any, Any]:
    """(probabilities, labels) of a run's best checkpoint on its test set (one DataModule per dataset: the test
    split does not depend on the seed)."""
    import torch

    from lit_regularize.config import config_from_file
    from lit_regularize.predict import load_model
    from lit_regularize.run import build_datamodule
    from lit_regularize.summary import RunSummary

    summary = RunSummary.read(log_dir / "summary.json")
    cfg = config_from_file(log_dir / "config.yaml")
    if cfg.data not in cache:
        dm = build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("test")
        cache[cfg.data] = dm
    model = load_model(summary.path(summary.best_checkpoint))
    probs, labels = [], []
    with torch.no_grad():
        for x, y in cache[cfg.data].test_dataloader():
            logits = model(x)
            probs.append(torch.sigmoid(logits) if model.binary else torch.softmax(logits, -1))
            labels.append(y.long())
    return torch.cat(probs), torch.cat(labels)


def calibration_error(probs: Any, labels: Any) -> float:
    """Expected calibration error (top-label, N_BINS equal-width bins) of test predictions."""
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    if probs.dim() == 1:
        return float(binary_calibration_error(probs, labels, n_bins=N_BINS, norm="l1"))
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=N_BINS, norm="l1"))


def spread(values: Sequence[float], spec: str) -> str:
    """'mean ± sample std' of the seeds' values."""
    if len(values) < 2:
        return spec.format(values[0])
    return f"{spec.format(statistics.fmean(values))} ± {spec.format(statistics.stdev(values))}"


def study_table(name: str, comparison: Any, cache: dict) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table of one study (one row per regularizer, mean ± std over seeds) and its per-run rows."""
    from lit_regularize.regularizers import describe
    from lit_regularize.summary import RunSummary

    runs = []
    for row in comparison.runs:
        log_dir = Path(row["log_dir"])
        cfg = RunSummary.read(log_dir / "summary.json").config
        probs, labels = test_predictions(log_dir, cache)
        runs.append({"study": name, "run": row["run"], "seed": row["seed"], "regularization": describe(cfg),
                     "test_acc_best": row["test_acc_best"], "best_val_loss": row["best_val_loss"],
                     "ece": calibration_error(probs, labels), "best_epoch": row["best_epoch"],
                     "epochs_run": row["epochs_run"], "wall_time_s": row["wall_time_s"]})
    lines = ["| regularizer | strength used | test acc (best ckpt) | best val loss | test ECE (15 bins) "
             "| best epoch | epochs run | s / run |", "|---|---|---|---|---|---|---|---|"]
    for label in dict.fromkeys(r["run"] for r in runs):
        mine = [r for r in runs if r["run"] == label]
        col = {k: [r[k] for r in mine] for k in mine[0]}
        lines.append(f"| {label} | {mine[0]['regularization']} | {spread(col['test_acc_best'], '{:.4f}')} | "
                     f"{spread(col['best_val_loss'], '{:.4f}')} | {spread(col['ece'], '{:.4f}')} | "
                     f"{spread(col['best_epoch'], '{:.1f}')} | {spread(col['epochs_run'], '{:.1f}')} | "
                     f"{statistics.fmean(col['wall_time_s']):.0f} |")
    return "\n".join(lines), runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the studies, score calibration, write catalog.md / catalog.json."""
    args = parse(argv)
    import lit_regularize as lr

    out = Path(args.out)
    sections, every_run, cache = [], [], {}
    for key in args.only:
        name = STUDIES[key]
        t0 = time.perf_counter()
        comparison = lr.compare(name, seeds=args.seeds, out=out / name, data_dir=args.data_dir, progress=False,
                                histogram_every=0)
        table, runs = study_table(name, comparison, cache)
        minutes = (time.perf_counter() - t0) / 60
        sections.append(f"## {name} ({args.seeds} seeds, {minutes:.1f} min)\n\n{table}\n")
        every_run += runs
        print(sections[-1], flush=True)
    (out / "catalog.md").write_text("\n".join(sections))
    (out / "catalog.json").write_text(json.dumps(every_run, indent=1))
    print(f"wrote {out / 'catalog.md'} and {out / 'catalog.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
