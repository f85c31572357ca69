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
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_regularize.bench.common import Progress, spread
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
    if not (Path(data_dir) / "FashionMNIST" / "raw").is_dir():
        raise UserError(f"--data-dir {data_dir}: no FashionMNIST/raw there")
    return list(variants) or list(VARIANTS)


def make_mlp(seed: int) -> nn.Module:
    """784-128-128-10 ReLU MLP (the image preset: 2 hidden layers of 128)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer,
                batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """One pass over batches; returns the wall seconds it took."""
    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator,
                   augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, chunk: int = 0
                   ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of an in-memory [N, 1, 28, 28] float tensor, optionally augmented batch by batch,
    or ``chunk`` images at a time when chunk > 0 (a multiple of batch_size)."""
    order = torch.randperm(len(labels), generator=generator)
    step = chunk if (augment is not None and chunk > 0) else batch_size
    for i in range(0, len(order), step):
        rows = order[i:i + step]
        x = augment(images[rows]) if augment is not None else images[rows]
        for j in range(0, len(rows), batch_size):
            yield x[j:j + batch_size], labels[rows[j:j + batch_size]]


def lit_epoch_times(data_dir: str, augment: bool, n_per_class: int, epochs: int, batch_size: int,
                    seed: int) -> list[float]:
    """Per-epoch seconds of run() as `fit --data fashion_mnist` runs it (no validation set: training only)."""
    from lit_regularize.config import make_config
    from lit_regularize.run import run

    with tempfile.TemporaryDirectory(prefix="lit_bench_mnist_") as logdir:
        cfg = make_config({"data": "fashion_mnist", "data_dir": data_dir, "n_per_class": n_per_class,
                           "augment": augment, "val_size": 0, "batch_size": batch_size, "max_epochs": epochs,
                           "seed": seed, "logdir": logdir, "progress": False, "accelerator": "cpu"})
        return run(cfg, evaluate_test=False).history["epoch_time"]


def loop_epoch_times(variant: str, data_dir: str, n_per_class: int, epochs: int, batch_size: int,
                     seed: int) -> list[float]:
    """Per-epoch seconds of one plain-torch-loop variant."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets
    from torchvision.transforms import v2

    from lit_regularize.data.augment import augment_batch, normalized_fill
    from lit_regularize.data.mnist import IMAGE_DATASETS, balanced_subset, load_images

    mean, std = IMAGE_DATASETS["fashion_mnist"][1:]
    images, labels = load_images("fashion_mnist", str(data_dir))["train"]
    idx, _ = balanced_subset(labels.numpy(), n_per_class, seed)
    model = make_mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    if variant == "notebook":
        tf = v2.Compose([v2.ToImage(), v2.RandomRotation(10),
                         v2.RandomResizedCrop(28, scale=(0.8, 1.0), antialias=True),
                         v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])])
        data = Subset(datasets.FashionMNIST(str(data_dir), train=True, transform=tf, download=False), idx.tolist())
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen)
        return [train_epoch(model, opt, loader) for _ in range(epochs)]
    x = ((images[idx].float() / 255 - mean) / std).unsqueeze(1)
    y = labels[idx]
    fill = normalized_fill(mean, std)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    augment = (lambda b: augment_batch(b, generator=aug_gen, fill=fill)) if variant != "plain" else None
    chunk = 2048 // batch_size * batch_size if variant == "batched_chunk" else 0
    return [train_epoch(model, opt, tensor_batches(x, y, batch_size, gen, augment, chunk)) for _ in range(epochs)]


def epoch_times(variant: str, data_dir: str, n_per_class: int = 1000, epochs: int = 3, batch_size: int = 32,
                seed: int = 0) -> list[float]:
    """Seconds of each of ``epochs`` training epochs of one variant."""
    if variant in LIT_VARIANTS:
        return lit_epoch_times(data_dir, LIT_VARIANTS[variant], n_per_class, epochs, batch_size, seed)
    if variant in LOOP_VARIANTS:
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


__all__ = ["bench", "check", "epoch_times", "lit_epoch_times", "loop_epoch_times", "make_mlp", "train_epoch",
           "tensor_batches", "VARIANTS", "LIT_VARIANTS", "LOOP_VARIANTS", "COLUMNS"]
