"""Batched augmentation (lit_regularize.data.augment) against torchvision's per-image v2 pipeline."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lit_regularize.data.augment import (AugmentParams, BatchAugment, apply_params, augment_batch,
                                         normalized_fill, sample_params)
from lit_regularize.data.augment import torchvision_pipeline as augmentation

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def full_params(b: int, h: int = 28, w: int = 28, angle: float = 0.0, flip: bool = False) -> AugmentParams:
    """B copies of one draw: the given angle, the whole image as the crop, the given flip."""
    return AugmentParams(torch.full((b,), angle), torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long),
                         torch.full((b,), h), torch.full((b,), w), torch.full((b,), flip))


def torchvision_apply(x: torch.Tensor, p: AugmentParams, fill: float = 0.0) -> torch.Tensor:
    """The per-image v2 functional ops with the given parameters."""
    out = []
    for i in range(len(x)):
        img = TF.rotate(x[i], float(p.angle[i]), fill=fill)  # nearest, about the centre, no expand
        img = TF.resized_crop(img, int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]),
                              list(x.shape[-2:]), antialias=True)
        out.append(TF.horizontal_flip(img) if p.flip[i] else img)
    return torch.stack(out)


def synthetic_images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """n uint8 [1, 28, 28] images with structure: off-centre rectangles, a gradient, noise."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, 1, 28, 28)
    for k in range(n):
        t, l = torch.randint(0, 12, (2,), generator=g).tolist()
        imgs[k, 0, t:t + 14, l:l + 10] = 1.0
        imgs[k, 0] += torch.linspace(0, 0.5, 28).view(1, 28) * (k % 2)
        imgs[k, 0] += 0.2 * torch.rand(28, 28, generator=g)
    return (imgs.clamp(0, 1) * 255).round().to(torch.uint8)


# -- (a) parameter distributions ---------------------------------------------------------------------------------
def torchvision_draws(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n draws of RandomRotation(10) and RandomResizedCrop(28, (0.8, 1)) parameters from torchvision itself."""
    torch.manual_seed(seed)
    rot, crop = v2.RandomRotation(10), v2.RandomResizedCrop(28, scale=(0.8, 1.0), antialias=True)
    img = [torch.zeros(1, 28, 28)]
    angles, boxes = [], []
    for _ in range(n):
        angles.append(rot.make_params(img)["angle"])
        c = crop.make_params(img)
        boxes.append((c["top"], c["left"], c["height"], c["width"]))
    b = np.array(boxes)
    return {"angle": np.array(angles), "top": b[:, 0], "left": b[:, 1], "height": b[:, 2], "width": b[:, 3]}


def batched_draws(n: int, seed: int = 1, **kw) -> dict[str, np.ndarray]:
    p = sample_params(n, 28, 28, generator=torch.Generator().manual_seed(seed), **kw)
    return {k: getattr(p, k).double().numpy() for k in ("angle", "top", "left", "height", "width")}


def param_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest gaps between summaries of two sets of draws, each to compare against its own tolerance."""
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]

    def summary(d):
        area = d["height"] * d["width"] / 784
        aspect = d["width"] / d["height"]
        return {"angle_q": np.quantile(d["angle"], qs) / 10, "angle_var": d["angle"].var() / (100 / 3),
                # crop sizes are integers, so area and aspect quantiles jump in steps: compare moments too
                "area_q": np.quantile(area, qs), "area_mean": area.mean(), "area_sd": area.std(),
                "log_aspect_mean": np.log(aspect).mean(), "log_aspect_sd": np.log(aspect).std(),
                "whole": np.mean((d["height"] == 28) & (d["width"] == 28)),
                "centre_y": (d["top"] + d["height"] / 2).mean() / 28, "centre_x": (d["left"] + d["width"] / 2).mean() / 28,
                "top_sd": d["top"].std(), "left_sd": d["left"].std()}

    sa, sb = summary(a), summary(b)
    gaps = {k: float(np.max(np.abs(np.asarray(sa[k]) - np.asarray(sb[k])))) for k in sa}

    def hist(d):  # joint distribution of the crop size
        keys, counts = np.unique(d["height"] * 100 + d["width"], return_counts=True)
        return dict(zip(keys.tolist(), (counts / counts.sum()).tolist()))
    ha, hb = hist(a), hist(b)
    gaps["size_tv"] = 0.5 * sum(abs(ha.get(k, 0) - hb.get(k, 0)) for k in set(ha) | set(hb))
    return gaps


# Tolerances: ~2-3x the largest gap seen between two independent sets of 4,000 torchvision draws
# (angle_q 0.028, angle_var 0.029, area_q one step of up to 0.036 (27*28 vs 28*28 pixels),
# log_aspect_mean 0.006, whole 0.0039, top_sd 0.051, size_tv 0.043), also over 20 seeds of the batched draws.
PARAM_TOL = {"angle_q": 0.07, "angle_var": 0.08, "area_q": 0.04, "area_mean": 0.004, "area_sd": 0.004,
             "log_aspect_mean": 0.015, "log_aspect_sd": 0.005, "whole": 0.012, "centre_y": 0.005, "centre_x": 0.005,
             "top_sd": 0.12, "left_sd": 0.12, "size_tv": 0.09}


@pytest.fixture(scope="module")
def tv_draws() -> dict[str, np.ndarray]:
    return torchvision_draws(4000)


def test_param_distribution_matches_torchvision(tv_draws):
    gaps = param_distance(tv_draws, batched_draws(20000))
    bad = {k: (round(v, 4), PARAM_TOL[k]) for k, v in gaps.items() if v > PARAM_TOL[k]}
    assert not bad, f"batched parameter draws differ from torchvision's: {bad}"


@pytest.mark.parametrize("wrong", [{"degrees": 13.0}, {"scale": (0.7, 1.0)}, {"ratio": (0.6, 1.6)}])
def test_param_distribution_check_catches_wrong_settings(tv_draws, wrong):
    """The comparison above has teeth: modestly wrong settings fail it."""
    gaps = param_distance(tv_draws, batched_draws(20000, **wrong))
    assert any(v > PARAM_TOL[k] for k, v in gaps.items()), gaps


def test_crop_sampling_rule_edge_cases():
    """Integer sizes inside the image; the central-crop fallback when no try fits (scale > 1 never fits)."""
    p = sample_params(5000, 28, 28, generator=torch.Generator().manual_seed(0))
    assert p.height.dtype == torch.long and int(p.height.min()) >= 1 and int(p.height.max()) <= 28
    assert bool(((p.top >= 0) & (p.top + p.height <= 28) & (p.left >= 0) & (p.left + p.width <= 28)).all())
    assert 0 < float(((p.height == 28) & (p.width == 28)).float().mean()) < 0.2  # some draws fall back
    p = sample_params(50, 20, 40, generator=torch.Generator().manual_seed(0), scale=(2.0, 3.0))
    # torchvision: aspect 2 > 4/3 -> h = 20, w = round(20 * 4/3) = 27, centred
    assert p.height.unique().tolist() == [20] and p.width.unique().tolist() == [27]
    assert p.top.unique().tolist() == [0] and p.left.unique().tolist() == [6]


# -- pixel-exact against torchvision's functional ops for given parameters -----------------------------------------
@pytest.mark.parametrize("shape,fill", [((64, 1, 28, 28), 0.0), ((24, 2, 20, 30), -0.8)])
def test_apply_matches_torchvision_functional_per_image(shape, fill):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=g)
    p = sample_params(shape[0], shape[2], shape[3], generator=g, hflip=True, degrees=30)
    torch.testing.assert_close(apply_params(x, p, fill=fill), torchvision_apply(x, p, fill), atol=2e-5, rtol=0)


# -- (b) pixel moments against the per-image v2 pipeline -----------------------------------------------------------
def pipeline_moments(images: torch.Tensor, repeats: int, hflip: bool) -> torch.Tensor:
    """Per-pixel mean and per-pixel second moment ([2, 28, 28]) of the project's per-image v2 pipeline in [0, 1]."""
    torch.manual_seed(0)
    tf = augmentation(hflip)
    out = torch.stack([tf(img) for _ in range(repeats) for img in images]).float() / 255
    return torch.stack([out.mean(0)[0], (out ** 2).mean(0)[0]])


def batched_moments(images: torch.Tensor, repeats: int, hflip: bool, **kw) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = (images.float() / 255).repeat(repeats, 1, 1, 1)
    out = augment_batch(x, generator=g, hflip=hflip, **kw)
    return torch.stack([out.mean(0)[0], (out ** 2).mean(0)[0]])


def moment_gaps(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    mean_a, mean_b = a[0].mean(), b[0].mean()
    sd_a, sd_b = (a[1].mean() - mean_a ** 2).sqrt(), (b[1].mean() - mean_b ** 2).sqrt()
    return {"pixel_mean_max": float((a[0] - b[0]).abs().max()), "pixel_mean_avg": float((a[0] - b[0]).abs().mean()),
            "mean": float((mean_a - mean_b).abs()), "std": float((sd_a - sd_b).abs())}


# 8 images x 300 repeats a side. Two independent runs of the v2 pipeline differ by up to pixel_mean_max 0.026,
# pixel_mean_avg 0.005, mean 0.0005, std 0.0003; rotating by +-20 instead of +-10 gives 0.097 / 0.012 / 0.0047.
MOMENT_TOL = {"pixel_mean_max": 0.06, "pixel_mean_avg": 0.009, "mean": 0.002, "std": 0.0015}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return synthetic_images()


@pytest.fixture(scope="module")
def reference_moments(images) -> dict[bool, torch.Tensor]:
    # 4,800 per-image pipelines of tiny ops: on one intra-op thread. With two, every op waits for the second
    # thread, and while another process holds the second core that turned ~1 s into 20-75 s on 2 cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {hflip: pipeline_moments(images, 300, hflip) for hflip in (False, True)}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("hflip", [False, True])
def test_pixel_moments_match_per_image_pipeline(images, reference_moments, hflip):
    gaps = moment_gaps(reference_moments[hflip], batched_moments(images, 300, hflip))
    bad = {k: (round(v, 4), MOMENT_TOL[k]) for k, v in gaps.items() if v > MOMENT_TOL[k]}
    assert not bad, f"augmented pixel moments differ from the per-image pipeline's: {bad}"


@pytest.mark.parametrize("wrong", [{"degrees": 20.0}, {"scale": (0.6, 1.0)}, {"hflip": True}])
def test_pixel_moment_check_catches_wrong_augmentation(images, reference_moments, wrong):
    kw = {"hflip": False, **wrong}
    gaps = moment_gaps(reference_moments[False], batched_moments(images, 300, **kw))
    assert any(v > MOMENT_TOL[k] for k, v in gaps.items()), gaps


# -- (c) identity-like checks --------------------------------------------------------------------------------------
def test_zero_angle_full_crop_returns_input():
    x = torch.randn(16, 3, 28, 28)
    torch.testing.assert_close(apply_params(x, full_params(16)), x, atol=1e-5, rtol=0)
    # the same through the sampler: nothing random left to draw
    out = augment_batch(x, generator=torch.Generator().manual_seed(0), degrees=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_hflip_flips():
    x = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(apply_params(x, full_params(8, flip=True)), x.flip(-1), atol=1e-5, rtol=0)
    out = augment_batch(x.repeat(50, 1, 1, 1), generator=torch.Generator().manual_seed(0), hflip=True,
                        degrees=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flipped = torch.isclose(out, x.flip(-1).repeat(50, 1, 1, 1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(out, x.repeat(50, 1, 1, 1), atol=1e-5).flatten(1).all(1)
    assert bool((flipped ^ same).all()) and 150 < int(flipped.sum()) < 250  # each image one or the other, p ~ 0.5


def test_rotation_fill_in_normalized_domain():
    """A black (uint8 0) image stays black after normalizing, whatever the draw; corners get the fill."""
    mean, std = 0.2860, 0.3530
    fill = normalized_fill(mean, std)
    black = torch.full((32, 1, 28, 28), fill)
    out = augment_batch(black, generator=torch.Generator().manual_seed(0), hflip=True, fill=fill)
    torch.testing.assert_close(out, black, atol=1e-5, rtol=0)
    white = torch.full((1, 1, 28, 28), (1 - mean) / std)
    rotated = apply_params(white, full_params(1, angle=45.0), fill=fill)
    assert math.isclose(float(rotated[0, 0, 0, 0]), fill, abs_tol=1e-5)
    assert math.isclose(float(rotated[0, 0, 14, 14]), (1 - mean) / std, abs_tol=1e-5)


# -- (d) seeding ---------------------------------------------------------------------------------------------------
def test_same_seed_same_output_different_seed_different():
    x = torch.randn(32, 1, 28, 28)

    def run(seed):
        return augment_batch(x, generator=torch.Generator().manual_seed(seed), hflip=True)
    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))
    a, b = BatchAugment(seed=5, hflip=True), BatchAugment(seed=5, hflip=True)
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))  # the generators advance in step
    torch.manual_seed(0)
    first = augment_batch(x)
    torch.manual_seed(0)
    assert torch.equal(first, augment_batch(x))  # generator=None: the global RNG


def test_module_eval_mode_and_flat_input():
    aug = BatchAugment(seed=0, image_size=(28, 28))
    flat = torch.randn(4, 784)
    out = aug(flat)
    assert out.shape == flat.shape and not torch.equal(out, flat)
    aug.eval()
    assert aug(flat) is flat
    with pytest.raises(ValueError, match="image_size"):
        BatchAugment(seed=0).train()(flat)


# -- (e) shape / dtype / device ------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 16, 24), (0, 1, 28, 28)])
def test_shape_dtype_device_preserved(device, dtype, shape):
    x = torch.randn(shape, dtype=dtype, device=device)
    out = augment_batch(x, generator=torch.Generator().manual_seed(0), hflip=True, fill=-0.5)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


def test_rejects_integer_or_unbatched_input():
    with pytest.raises(ValueError, match="float"):
        augment_batch(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError):
        apply_params(torch.zeros(1, 28, 28), full_params(1))
