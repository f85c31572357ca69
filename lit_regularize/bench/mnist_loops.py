"""The plain-torch Fashion-MNIST loops bench's mnist section times (torch imported here, not by `bench --help`)."""
from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


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


__all__ = ["loop_epoch_times", "make_mlp", "train_epoch", "tensor_batches"]
