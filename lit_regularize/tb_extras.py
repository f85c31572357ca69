"""TensorBoard extras every run logs: weight histograms + sparsity per epoch; once: the Custom Scalars layout
(train and val on one chart) and, for augmented images, a grid of them."""
from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lit_regularize.plots import NEAR_ZERO

# A fixed random subset of this many weights per layer feeds the histogram: at hidden 512 the first layer has
# 5.1M weights, and a histogram of all of them every epoch would cost a noticeable share of a ~0.9 s epoch
# (a small epoch is ~0.15 s). The mean |w| and near-zero scalars still cover every weight.
HIST_SAMPLE = 16384
HIST_BINS = 64  # buckets per histogram (TensorBoard's own summaries use 30; its dashboards re-bin anyway)
RANDPERM_MAX = 1_000_000  # above this many weights the subset is drawn with replacement (see _sample)
GRID_IMAGES = 8  # images per row of the augmentation grid
GRID_VIEWS = 3  # augmented views of each image below the originals
# The Custom Scalars tab: train and val of a metric on one chart with one y-scale, as keras users read them (the
# Scalars and Time Series tabs draw every tag on a card of its own). Tags are regexes, anchored so that
# val/best_loss does not join the val/loss curve.
CURVES_LAYOUT = {"learning curves": {"loss (train, val)": ["Multiline", ["^train/loss$", "^val/loss$"]],
                                     "accuracy (train, val)": ["Multiline", ["^train/acc$", "^val/acc$"]]}}
AUGMENTED_IMAGES_TAG = "views/augmented_train_images"  # after train/ and val/ (see trainer.TEST_PREFIX)


def _writer(trainer: pl.Trainer) -> Optional[Any]:
    """The SummaryWriter of the run's TensorBoard logger (None without one, or off rank 0)."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class TensorBoardExtras(pl.Callback):
    """Per epoch: histogram of each Linear layer's weights (subsampled), mean |w| and near-zero fraction;
    once, for augmented image data: original and augmented training images as a grid."""

    def __init__(self, hist_sample: int = HIST_SAMPLE, every: int = 1) -> None:
        self.hist_sample, self.every = hist_sample, every
        self._picks: dict[int, torch.Tensor] = {}

    def _sample(self, i: int, w: torch.Tensor) -> torch.Tensor:
        w = w.detach()
        if w.dim() == 2 and not w.is_contiguous() and w.t().is_contiguous():
            w = w.t()  # the feature-major first layer: flattening its transposed view would copy every weight
        flat = w.reshape(-1)
        n = flat.numel()
        if n <= self.hist_sample:
            return flat
        if i not in self._picks or int(self._picks[i].max()) >= n:
            # A private generator: drawing the subset must not move the global RNG training uses.
            gen = torch.Generator().manual_seed(i)
            if n <= RANDPERM_MAX:
                picks = torch.randperm(n, generator=gen)[:self.hist_sample]
            else:  # randperm of 5M weights takes ~0.2 s; a few repeats among 16k draws change no histogram
                picks = torch.randint(n, (self.hist_sample,), generator=gen)
            self._picks[i] = picks.to(flat.device)
        return flat[self._picks[i]]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _writer(trainer)
        step = trainer.current_epoch + 1
        if writer is None or not hasattr(pl_module, "linears") or not self.every or step % self.every:
            return
        from lit_regularize.regularizers.layers import reading_weights

        # in eval mode: reading a spectral-normed weight in train mode would step its sigma estimate
        with torch.no_grad(), reading_weights(pl_module):
            self.log_weights(writer, pl_module.linears(), step)

    def log_weights(self, writer: Any, linears: Any, step: int) -> None:
        """Each Linear's weight histogram (subsampled), mean |w| and near-zero fraction at `step` (1-based epoch)."""
        with torch.no_grad():
            for i, lin in enumerate(linears):
                w = lin.weight.detach()
                sample = self._sample(i, w).float().cpu()
                sample = sample[torch.isfinite(sample)]  # a diverged run's NaN weights have no histogram
                if sample.numel():
                    add_histogram(writer, f"weights/layer{i}", sample, step)
                # exact statistics over every weight, computed without an |w| copy of a 5M-weight layer
                writer.add_scalar(f"weights/layer{i}_mean_abs", float(w.norm(1)) / w.numel(), step)
                near_zero = torch.count_nonzero((w < NEAR_ZERO) & (w > -NEAR_ZERO))
                writer.add_scalar(f"weights/layer{i}_near_zero", float(near_zero) / w.numel(), step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _writer(trainer)
        if writer is None or trainer.current_epoch > 0:  # once per run: a resume starts past epoch 0
            return
        writer.add_custom_scalars(CURVES_LAYOUT)
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not getattr(dm, "augment", False):
            return
        grid = augmentation_grid(dm)
        if grid is not None:
            writer.add_image(AUGMENTED_IMAGES_TAG, grid, 0)


def add_histogram(writer: Any, tag: str, values: torch.Tensor, step: int, bins: int = HIST_BINS) -> None:
    """SummaryWriter.add_histogram with the statistics computed in torch (add_histogram_raw).

    torch's add_histogram computes them with numpy, whose OpenBLAS threads then spin beside training's own: on
    2 cores the next ~7 training steps each ran ~2x slower, every epoch (gone with OPENBLAS_NUM_THREADS=1)."""
    v = values.detach().double().reshape(-1)
    lo, hi = float(v.min()), float(v.max())
    if hi > lo:
        counts = torch.histc(v, bins, min=lo, max=hi)
        limits = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)[1:]
    else:  # every value equal: one bucket
        counts, limits = torch.tensor([float(v.numel())]), torch.tensor([hi])
    writer.add_histogram_raw(tag, min=lo, max=hi, num=v.numel(), sum=float(v.sum()), sum_squares=float(v.dot(v)),
                             bucket_limits=limits.tolist(), bucket_counts=counts.tolist(), global_step=step)


def augmentation_grid(dm: Any, n: int = GRID_IMAGES, views: int = GRID_VIEWS) -> Optional[torch.Tensor]:
    """First row: n training images as stored; next rows: `views` augmented draws of the same images."""
    from torchvision.utils import make_grid

    from lit_regularize.data.augment import augment_batch

    dataset = dm.train_set
    positions = list(range(min(n, len(dataset))))
    if not positions:
        return None
    x, _ = dataset.__getitems__(positions)
    # A generator of its own: drawing the grid must not change the augmentation draws of training.
    gen = torch.Generator().manual_seed(dm.seed)
    fill = -dm.mean / dm.std
    augmented = [augment_batch(x, fill=fill, hflip=dm.hflip, generator=gen) for _ in range(views)]
    images = torch.cat([x] + augmented) * dm.std + dm.mean
    return make_grid(images.clamp(0, 1), nrow=len(positions), padding=2, pad_value=1.0)


__all__ = ["TensorBoardExtras", "add_histogram", "augmentation_grid", "HIST_SAMPLE", "CURVES_LAYOUT",
           "AUGMENTED_IMAGES_TAG"]
