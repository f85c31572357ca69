"""Fashion-MNIST epochs: plain vs batch-augmented training, and the notebooks' per-image v2 pipeline.

Variants (all train the image preset's MLP, 784-128-128-10 with Adam 1e-3, batch 32, on the same seeded balanced
subset, training only, no validation; only the input pipeline differs):

* ``lit_plain`` / ``lit_augment``: lit_regularize's run() as `fit --data fashion_mnist --n-per-class N
  [--augment]` runs it (Lightning, checkpoints, TensorBoard); augment_batch runs on each batch after transfer.
* ``plain``: a plain torch loop; the normalized images sit in one tensor, each step indexes a shuffled batch.
* ``batched``: as plain, plus :func:`lit_regularize.data.augment.augment_batch` on every batch.
* ``batched_chunk``: as plain, with augment_batch run on 2048 shuffled images at a time and the batches sliced
  from the result (the same distribution: every image still gets its own draw; fewer, larger calls).
* ``notebook``: the notebooks' pattern, ``DataLoader(torchvision.datasets.FashionMNIST(root, transform=v2.Compose(
  [ToImage, RandomRotation(10), RandomResizedCrop(28, scale=(0.8, 1.0)), ToDtype, Normalize])))`` over the subset.

Data loading runs in the main process (num_workers=0) in every variant.
"""
from __future__ import annotations

import tempfile
from typing import Any, Sequence

from lit_regularize.bench.common import Progress, require, spread
from lit_regularize.errors import UserError

LIT_VARIANTS = {"lit_plain": False, "lit_augment": True}
LOOP_VARIANTS = ("plain", "batched", "batched_chunk", "notebook")
VARIANTS = (*LIT_VARIANTS, *LOOP_VARIANTS)
COLUMNS = [("variant", "variant", ""), ("images", "images", ""), ("min_epoch_s", "min s/epoch", "{:.3f}"),
           ("median_epoch_s", "median s/epoch", "{:.3f}"), ("vs_plain", "× plain (median)", "{:.2f}")]


def check(data_dir: str, variants: Sequence[str]) -> list[str]:
    """The variants to time (all when none are named); unknown names and missing files are user errors."""
    for v in variants:
        if v not in VARIANTS:
            raise UserError(f"unknown MNIST variant {v!r} (choose from {', '.join(VARIANTS)})")
    require(data_dir, "FashionMNIST/raw", folder=True)
    return list(variants) or list(VARIANTS)


def lit_epoch_times(data_dir: str, augment: bool, n_per_class: int, epochs: int, batch_size: int,
                    seed: int) -> list[float]:
    """Per-epoch wall seconds (training, checkpoint, logging) of run() as `fit --data fashion_mnist` runs it (no
    validation set)."""
    from lit_regularize.bench.clock import timed_run
    from lit_regularize.config import make_config

    with tempfile.TemporaryDirectory(prefix="lit_bench_mnist_") as logdir:
        cfg = make_config({"data": "fashion_mnist", "data_dir": data_dir, "n_per_class": n_per_class,
                           "augment": augment, "val_size": 0, "batch_size": batch_size, "max_epochs": epochs,
                           "seed": seed, "logdir": logdir, "progress": False, "accelerator": "cpu"})
        return timed_run(cfg, evaluate_test=False)[0]


def epoch_times(variant: str, data_dir: str, n_per_class: int = 1000, epochs: int = 3, batch_size: int = 32,
                seed: int = 0) -> list[float]:
    """Seconds of each of ``epochs`` training epochs of one variant."""
    if variant in LIT_VARIANTS:
        return lit_epoch_times(data_dir, LIT_VARIANTS[variant], n_per_class, epochs, batch_size, seed)
    if variant in LOOP_VARIANTS:
        from lit_regularize.bench.mnist_loops import loop_epoch_times  # torch: only when timing

        return loop_epoch_times(variant, data_dir, n_per_class, epochs, batch_size, seed)
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")


def bench(data_dir: str, variants: Sequence[str] = (), n_per_class: int = 1000, epochs: int = 3,
          batch_size: int = 32, seed: int = 0, progress: Progress = print) -> dict[str, Any]:
    """The MNIST section: {'rows': [{variant, images, epoch_s, min/median_epoch_s, vs_plain}, ...]}."""
    variants = check(data_dir, variants)
    if any(v in LIT_VARIANTS for v in variants):
        progress("  mnist: one untimed lit_plain epoch (Lightning start-up, data load) ...")
        lit_epoch_times(data_dir, False, n_per_class, 1, batch_size, seed)
    rows = []
    for v in variants:
        progress(f"  mnist: timing {v} ({epochs} epochs on {10 * n_per_class} images) ...")
        rows.append({"variant": v, "images": 10 * n_per_class,
                     **spread(epoch_times(v, data_dir, n_per_class, epochs, batch_size, seed), "epoch_s")})
    for r in rows:  # lit rows against lit_plain, loop rows against the plain loop
        base = next((b for b in rows if b["variant"] == ("lit_plain" if r["variant"] in LIT_VARIANTS else "plain")),
                    None)
        r["vs_plain"] = r["median_epoch_s"] / base["median_epoch_s"] if base else None
    return {"rows": rows}


__all__ = ["bench", "check", "epoch_times", "lit_epoch_times", "VARIANTS", "LIT_VARIANTS", "LOOP_VARIANTS", "COLUMNS"]
