"""Batched training-time augmentation of image batches (placeholder: per image, torchvision v2)."""
from __future__ import annotations

from typing import Optional

import torch
from torchvision.transforms import v2


def augment_batch(x: torch.Tensor, *, fill: float = 0.0, hflip: bool = False,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Rotation ±10°, random resized crop (0.8-1.0) and optional flip of every image of a B×1×H×W batch."""
    steps = [v2.RandomRotation(10, fill=fill), v2.RandomResizedCrop(x.shape[-1], scale=(0.8, 1.0), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    t = v2.Compose(steps)
    return torch.stack([t(img) for img in x])
