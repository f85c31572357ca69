"""Batched MNIST augmentation: the notebooks' per-image torchvision v2 pipeline, for a whole batch at once.

The per-image pipeline (``lit_regularize.data.mnist.augmentation``) is::

    v2.RandomRotation(10)                                   # nearest, fill 0, about the centre, no expand
    v2.RandomResizedCrop(28, scale=(0.8, 1.0), antialias=True)   # ratio (3/4, 4/3), bilinear
    v2.RandomHorizontalFlip()                               # only with --hflip, p = 0.5

applied image by image in Python (~1.2 ms an image). :func:`augment_batch` draws the same per-image
parameters with the same distributions (see :func:`sample_params`, a vectorized copy of torchvision's
``make_params`` rules) and applies them to a ``[B, C, H, W]`` float batch with two batched ``grid_sample``
calls on whatever device the batch is on (one composed affine would not match: see
:func:`apply_params`).

Input domain: any float domain that is an affine image of the uint8 pixels -- [0, 1] or the normalized
``(x / 255 - mean) / std`` the datasets yield. Both steps commute with such a map (nearest picks a pixel,
bilinear weights sum to 1), so augmenting normalized images equals normalizing augmented ones, provided
``fill`` -- the value rotated-in corners get -- is the image of uint8 0 in that domain: 0.0 for [0, 1]
images, ``-mean / std`` for normalized ones (:func:`normalized_fill`).

The one difference from the per-image pipeline on uint8 images: torchvision rounds the resized crop back to
uint8, this keeps floats (an error of at most 0.5/255 a pixel, with mean ~0).

Seeding: every random draw comes from the ``generator`` argument (a CPU ``torch.Generator`` is the
intended use, also for a CUDA batch: 24 uniforms an image are drawn on the CPU, 20 grid terms an image copied over), so a run seeded through its
generator is reproducible, and the same seed gives the same augmentation on CPU and GPU. With
``generator=None`` the global CPU RNG (``torch.manual_seed``) is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: RandomResizedCrop's tries before it falls back to a central crop (torchvision's constant)
CROP_TRIES = 10


@dataclass(frozen=True)
class AugmentParams:
    """Per-image parameters of one batch, all 1-D tensors of length B on the batch's device.

    ``angle``: rotation in degrees, counter-clockwise as in torchvision; ``top``, ``left``, ``height``,
    ``width``: the crop box in the rotated image (int64, torchvision's ``RandomResizedCrop`` params);
    ``flip``: bool, horizontal flip of the resized crop.
    """

    angle: Tensor
    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor

    def to(self, device: torch.device | str) -> "AugmentParams":
        """The same parameters on another device."""
        return AugmentParams(*(getattr(self, f).to(device, non_blocking=True) for f in
                               ("angle", "top", "left", "height", "width", "flip")))


def normalized_fill(mean: float, std: float) -> float:
    """The value of a uint8 0 pixel after ``(x / 255 - mean) / std``: the rotation fill for normalized batches."""
    return (0.0 - mean) / std


def sample_params(batch: int, height: int, width: int, *, generator: Optional[torch.Generator] = None,
                  degrees: float = 10.0, scale: tuple[float, float] = (0.8, 1.0),
                  ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = False,
                  device: torch.device | str | None = None) -> AugmentParams:
    """Draw B images' parameters with torchvision v2's distributions, vectorized.

    * angle ~ U(-degrees, degrees) (``RandomRotation.make_params``);
    * crop: up to 10 tries of area = H*W*U(scale), aspect = exp(U(log ratio)), w = round(sqrt(area*aspect)),
      h = round(sqrt(area/aspect)) (round half to even, as Python's round); the first try with
      0 < w <= W and 0 < h <= H wins and gets top ~ randint(0, H-h+1), left ~ randint(0, W-w+1); if none
      wins, torchvision's central-crop fallback (``RandomResizedCrop.make_params``);
    * flip ~ Bernoulli(0.5) when ``hflip`` (``RandomHorizontalFlip``: flips when rand < p).

    All uniforms come from one ``torch.rand`` call on the generator (CPU when None); the arithmetic is done in
    NumPy float64 (a few dozen tiny torch ops cost more than the image work at batch 32). The parameters are
    returned on the CPU, or on ``device``. The random stream is not torchvision's (draws are batched, all 10
    tries are always drawn), only the distribution is.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch, 2 * CROP_TRIES + 4, generator=generator, device=gen_device, dtype=torch.float64)
    u = u.cpu().numpy()
    angle = (2 * u[:, 0] - 1) * degrees
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, 4:4 + CROP_TRIES])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:, 4 + CROP_TRIES:])
    w, h = np.rint(np.sqrt(area * aspect)), np.rint(np.sqrt(area / aspect))  # rint: half to even, like round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.argmax(axis=1)  # the first successful try (0 if none)
    rows = np.arange(batch)
    w, h = w[rows, first].astype(np.int64), h[rows, first].astype(np.int64)
    # randint(0, n) as floor(U * n): the same uniform distribution over {0, ..., n-1}
    top = np.minimum(np.floor(u[:, 1] * (height - h + 1)).astype(np.int64), height - h)
    left = np.minimum(np.floor(u[:, 2] * (width - w + 1)).astype(np.int64), width - w)
    miss = ~ok.any(axis=1)
    if miss.any():
        # torchvision's fallback: a central crop of the whole image, or of the nearest allowed aspect ratio
        in_ratio = width / height
        if in_ratio < min(ratio):
            fw, fh = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            fw, fh = int(round(height * max(ratio))), height
        else:
            fw, fh = width, height
        w[miss], h[miss], top[miss], left[miss] = fw, fh, (height - fh) // 2, (width - fw) // 2
    flip = u[:, 3] < 0.5 if hflip else np.zeros(batch, dtype=bool)
    params = AugmentParams(torch.from_numpy(angle.astype(np.float32)), torch.from_numpy(top),
                           torch.from_numpy(left), torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(flip))
    return params if device is None else params.to(device)


def _coefficients(params: AugmentParams, height: int, width: int) -> np.ndarray:
    """[B, 2, 10] float64: per image and grid channel (x, y), the terms of both sampling grids (apply_params)."""
    angle, top, left, h, w, flip = (getattr(params, f).cpu().numpy().astype(np.float64) for f in
                                    ("angle", "top", "left", "height", "width", "flip"))
    a = np.deg2rad(angle)
    cos, sin, zero = np.cos(a), np.sin(a), np.zeros_like(a)
    sign = 1.0 - 2.0 * flip
    cols = [
        # step 1 (rotation): grid = col0 * bx + col1 * by
        (cos, sin * (width / height)), (-sin * (height / width), cos),
        # step 2 (crop, resize, flip), x: clamp(col2 * bx + col3, col4, col5); y: clamp(col6 * by + col7, col8, col9)
        (sign * w / width, zero), ((2 * left + w) / width - 1, zero),
        ((2 * left + 1) / width - 1, zero), ((2 * (left + w) - 1) / width - 1, zero),
        (zero, h / height), (zero, (2 * top + h) / height - 1),
        (zero, (2 * top + 1) / height - 1), (zero, (2 * (top + h) - 1) / height - 1),
    ]
    return np.stack([np.stack(c, axis=1) for c in cols], axis=2)


def apply_params(x: Tensor, params: AugmentParams, *, fill: float = 0.0) -> Tensor:
    """Rotate, crop-resize back to H×W and flip each image of ``x`` ([B, C, H, W] float) by ``params``.

    Two batched ``grid_sample`` calls, not one composed affine: torchvision rotates with *nearest* and then
    resizes with *bilinear*; one bilinear sample of the composed map would blur differently, and this way
    each step matches torchvision's to float rounding (tests/test_augment.py checks it pixel by pixel).
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"augment: expected a float [B, C, H, W] batch, got {tuple(x.shape)} {x.dtype}")
    b, _, hgt, wid = x.shape
    if b == 0:
        return x.clone()
    dev, dt = x.device, x.dtype
    # All per-image terms travel to the batch's device in one copy.
    k = torch.from_numpy(_coefficients(params, hgt, wid)).to(dev, dt, non_blocking=True).view(b, 2, 1, 1, 10)
    # pixel centres in grid_sample's normalized coordinates (align_corners=False): (2k + 1) / n - 1
    bx = torch.linspace(1 / wid - 1, 1 - 1 / wid, wid, device=dev, dtype=dt).view(1, 1, 1, wid)
    by = torch.linspace(1 / hgt - 1, 1 - 1 / hgt, hgt, device=dev, dtype=dt).view(1, 1, hgt, 1)
    # Grids are built by broadcasting, not F.affine_grid (its batched 3x2 bmm took ~60% of the time on CPU), as
    # [B, 2, H, W] handed to grid_sample permuted to [B, H, W, 2] (ops on an innermost dimension of 2 were
    # 3-5x slower).
    # Step 1, RandomRotation: torchvision's inverse map, output -> input in pixel coordinates about the centre,
    # is [[cos a, -sin a], [sin a, cos a]] (y down); in normalized coordinates the off-diagonal terms pick up
    # the aspect ratio H/W.
    grid = torch.addcmul(k[..., 0] * bx, k[..., 1], by).permute(0, 2, 3, 1)
    # fill: grid_sample pads with zeros, so sample (x - fill) and add fill back (exact for nearest)
    shifted = x - fill if fill else x
    rotated = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    # Step 2, RandomResizedCrop + flip: output pixel u samples crop coordinate (u + 0.5) * w / W - 0.5, clamped
    # to the crop's edge pixels as F.interpolate(bilinear, align_corners=False) clamps at the crop's edges;
    # x depends on the column only and y on the row only, so the grid is an outer sum. The crop is never
    # larger than the image, so the resize only ever upsamples (by at most 28/22 here): antialias=True then
    # uses the plain bilinear (triangle) kernel, and antialias needs no treatment.
    gx = torch.clamp(k[..., 2] * bx + k[..., 3], k[..., 4], k[..., 5])  # [B, 2, 1, W], channel y = 0
    gy = torch.clamp(k[..., 6] * by + k[..., 7], k[..., 8], k[..., 9])  # [B, 2, H, 1], channel x = 0
    grid = (gx + gy).permute(0, 2, 3, 1)
    out = F.grid_sample(rotated, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out + fill if fill else out


def augment_batch(x: Tensor, *, generator: Optional[torch.Generator] = None, hflip: bool = False,
                  fill: float = 0.0, degrees: float = 10.0, scale: tuple[float, float] = (0.8, 1.0),
                  ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """Augment a [B, C, H, W] float batch on its own device: RandomRotation(degrees) ->
    RandomResizedCrop((H, W), scale, ratio) -> [RandomHorizontalFlip], each image its own draw.

    ``fill`` is the rotation fill in ``x``'s domain: 0.0 for [0, 1] images, ``normalized_fill(mean, std)``
    for normalized ones (uint8 0 = black, as torchvision's fill=0). Draws come from ``generator``.
    Returns a new tensor of x's shape, dtype and device.
    """
    b, _, hgt, wid = x.shape
    params = sample_params(b, hgt, wid, generator=generator, degrees=degrees, scale=scale, ratio=ratio,
                           hflip=hflip, device=x.device)
    return apply_params(x, params, fill=fill)


class BatchAugment(torch.nn.Module):
    """:func:`augment_batch` as a module holding its settings and its own seeded generator.

    Only augments in training mode (``module.train()``); in eval mode it returns the input. Accepts
    [B, C, H, W] batches, or flat [B, H*W] ones when ``image_size`` is given (returned flat again).
    The generator lives on the CPU: ``seed`` makes the draws reproducible whatever device the batch is on;
    in DDP give each rank its own seed (e.g. seed + rank), or every rank augments alike.
    """

    def __init__(self, *, hflip: bool = False, fill: float = 0.0, seed: Optional[int] = None,
                 degrees: float = 10.0, scale: tuple[float, float] = (0.8, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), image_size: Optional[tuple[int, int]] = None) -> None:
        super().__init__()
        self.hflip, self.fill, self.degrees, self.scale, self.ratio = hflip, fill, degrees, scale, ratio
        self.image_size = image_size
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        flat = x.dim() == 2
        if flat:
            if self.image_size is None:
                raise ValueError("BatchAugment: flat [B, H*W] input needs image_size=(H, W)")
            x = x.view(x.shape[0], 1, *self.image_size)
        out = augment_batch(x, generator=self.generator, hflip=self.hflip, fill=self.fill, degrees=self.degrees,
                            scale=self.scale, ratio=self.ratio)
        return out.flatten(1) if flat else out

    def extra_repr(self) -> str:
        return (f"degrees={self.degrees}, scale={self.scale}, ratio=({self.ratio[0]:.4g}, {self.ratio[1]:.4g}), "
                f"hflip={self.hflip}, fill={self.fill:.4g}")


def torchvision_pipeline(hflip: bool = False) -> Callable[[Tensor], Tensor]:
    """The notebooks' per-image torchvision v2 pipeline that augment_batch reproduces (tests and the benchmark)."""
    from torchvision.transforms import v2

    steps = [v2.RandomRotation(10), v2.RandomResizedCrop(28, scale=(0.8, 1.0), antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)
