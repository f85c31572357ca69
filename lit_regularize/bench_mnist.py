"""Epoch timing of Fashion-MNIST training: no augmentation vs batched augmentation vs per-image v2 pipelines.

    python -m lit_regularize.bench_mnist --data-dir /work/shared/data --n-per-class 1000 --epochs 3

Variants (all train the project's default MLP shape 784-128-128-10 with Adam 1e-3, batch 32, in a plain torch
loop, so only the input pipeline differs):

* ``plain``: the normalized images sit in one tensor; each step indexes a shuffled batch.
* ``batched``: as plain, plus :func:`lit_regularize.data.augment.augment_batch` on every batch.
* ``batched_chunk``: as plain, with augment_batch run on 2048 shuffled images at a time and the batches sliced
  from the result (the same distribution: every image still gets its own draw; fewer, larger calls).
* ``notebook``: the notebooks' pattern, ``DataLoader(torchvision.datasets.FashionMNIST(root, transform=v2.Compose(
  [ToImage, RandomRotation, RandomResizedCrop, ToDtype, Normalize])))`` over the same subset.

Data loading runs in the main process (num_workers=0) on every variant; see ``--threads``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

from lit_regularize.data.augment import augment_batch, normalized_fill
from lit_regularize.data.augment import torchvision_pipeline as augmentation
from lit_regularize.data.mnist import IMAGE_DATASETS, balanced_subset, load_images

VARIANTS = ("plain", "batched", "batched_chunk", "notebook")
MEAN, STD = IMAGE_DATASETS["fashion_mnist"][1:]


def make_mlp(seed: int) -> nn.Module:
    """784-128-128-10 ReLU MLP (the project's defaults: 2 hidden layers of 128)."""
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


def epoch_times(variant: str, data_dir: str, n_per_class: int = 1000, epochs: int = 3, batch_size: int = 32,
                seed: int = 0) -> list[float]:
    """Seconds of each of ``epochs`` training epochs of one variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    images, labels = load_images("fashion_mnist", str(data_dir))["train"]
    idx, _ = balanced_subset(labels.numpy(), n_per_class, seed)
    model = make_mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    if variant in ("plain", "batched", "batched_chunk"):
        x = ((images[idx].float() / 255 - MEAN) / STD).unsqueeze(1)
        y = labels[idx]
        fill = normalized_fill(MEAN, STD)
        aug_gen = torch.Generator().manual_seed(seed + 1)
        augment = (lambda b: augment_batch(b, generator=aug_gen, fill=fill)) if variant != "plain" else None
        chunk = 2048 // batch_size * batch_size if variant == "batched_chunk" else 0
        return [train_epoch(model, opt, tensor_batches(x, y, batch_size, gen, augment, chunk)) for _ in range(epochs)]
    if variant == "notebook":
        tf = v2.Compose([v2.ToImage(), v2.RandomRotation(10), v2.RandomResizedCrop(28, scale=(0.8, 1.0), antialias=True),
                         v2.ToDtype(torch.float32, scale=True), v2.Normalize([MEAN], [STD])])
        data = Subset(datasets.FashionMNIST(str(data_dir), train=True, transform=tf, download=False), idx.tolist())
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen)
    return [train_epoch(model, opt, loader) for _ in range(epochs)]


def bench_epochs(data_dir: str, n_per_class: int = 1000, epochs: int = 3, batch_size: int = 32,
                 variants: Sequence[str] = VARIANTS, seed: int = 0) -> list[dict[str, float | str]]:
    """Rows {variant, min_epoch_s, median_epoch_s, epochs} for each variant, in order."""
    rows: list[dict[str, float | str]] = []
    for v in variants:
        times = epoch_times(v, data_dir, n_per_class, epochs, batch_size, seed)
        rows.append({"variant": v, "min_epoch_s": min(times), "median_epoch_s": statistics.median(times),
                     "epochs": len(times)})
    return rows


def bench_augment(batch_sizes: Sequence[int] = (32, 256), repeats: int = 200, seed: int = 0
                  ) -> list[dict[str, float | int | str]]:
    """Median time of augment_batch on random [B, 1, 28, 28] batches, and of the per-image v2 pipeline."""
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float | int | str]] = []

    def median_s(fn: Callable[[], object], n: int) -> float:
        for _ in range(5):
            fn()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    for b in batch_sizes:
        x = torch.randn(b, 1, 28, 28, generator=gen)
        s = median_s(lambda: augment_batch(x, generator=gen, fill=-0.81), repeats)
        rows.append({"what": "augment_batch", "batch": b, "batch_ms": s * 1e3, "us_per_image": s * 1e6 / b})
    tf = augmentation(False)
    img = (torch.rand(32, 1, 28, 28, generator=gen) * 255).to(torch.uint8)
    s = median_s(lambda: [tf(i) for i in img], max(repeats // 10, 5))
    rows.append({"what": "per-image v2", "batch": 32, "batch_ms": s * 1e3, "us_per_image": s * 1e6 / 32})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, float | str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="/work/shared/data", help="folder holding FashionMNIST/raw")
    p.add_argument("--n-per-class", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1 for steadier timings)")
    p.add_argument("--no-augment-bench", action="store_true", help="skip the per-batch augment_batch timing")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not a.no_augment_bench:
        for r in bench_augment():
            print(f"{r['what']:>14}  batch {r['batch']:>4}: {r['batch_ms']:7.3f} ms/batch  "
                  f"{r['us_per_image']:7.1f} us/image")
    rows = bench_epochs(a.data_dir, a.n_per_class, a.epochs, a.batch_size, [v for v in a.variants.split(",") if v])
    base = next((r["median_epoch_s"] for r in rows if r["variant"] == "plain"), None)
    print(f"{'variant':>10} {'min_s':>8} {'median_s':>9} {'x plain (median)':>17}")
    for r in rows:
        ratio = f"{r['median_epoch_s'] / base:.2f}" if base else "-"
        print(f"{r['variant']:>10} {r['min_epoch_s']:8.3f} {r['median_epoch_s']:9.3f} {ratio:>17}")
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
