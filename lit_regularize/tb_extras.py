"""TensorBoard extras every run logs: weight histograms + sparsity per epoch, augmented MNIST images once."""
from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lit_regularize.plots import NEAR_ZERO

# A fixed random subset of this many weights per layer feeds the histogram (TensorBoard bins 65k values in ~7 ms,
# 16k in ~1.5 ms, and a small epoch is ~130 ms): at hidden 512 the first layer has
# 5.1M weights and a full histogram each epoch would cost a noticeable share of a ~2 s epoch.
HIST_SAMPLE = 16384
GRID_IMAGES = 8  # images per row of the augmentation grid
GRID_VIEWS = 3  # augmented views of each image below the originals


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
        flat = w.detach().reshape(-1)
        if flat.numel() <= self.hist_sample:
            return flat
        if i not in self._picks or int(self._picks[i].max()) >= flat.numel():
            # A private generator: drawing the subset must not move the global RNG training uses.
            gen = torch.Generator().manual_seed(i)
            self._picks[i] = torch.randperm(flat.numel(), generator=gen)[:self.hist_sample].to(flat.device)
        return flat[self._picks[i]]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _writer(trainer)
        step = trainer.current_epoch + 1
        if writer is None or not hasattr(pl_module, "linears") or not self.every or step % self.every:
            return
        with torch.no_grad():
            for i, lin in enumerate(pl_module.linears()):
                w = lin.weight.detach()
                sample = self._sample(i, w).float().cpu()
                sample = sample[torch.isfinite(sample)]  # a diverged run's NaN weights have no histogram
                if sample.numel():
                    writer.add_histogram(f"weights/layer{i}", sample, step)
                # exact statistics over every weight, computed without an |w| copy of a 5M-weight layer
                writer.add_scalar(f"weights/layer{i}_mean_abs", float(w.norm(1)) / w.numel(), step)
                near_zero = torch.count_nonzero((w < NEAR_ZERO) & (w > -NEAR_ZERO))
                writer.add_scalar(f"weights/layer{i}_near_zero", float(near_zero) / w.numel(), step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _writer(trainer)
        dm = getattr(trainer, "datamodule", None)
        if writer is None or dm is None or not getattr(dm, "augment", False) or trainer.current_epoch > 0:
            return
        grid = augmentation_grid(dm)
        if grid is not None:
            writer.add_image("data/augmented_train_images", grid, 0)


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


__all__ = ["TensorBoardExtras", "augmentation_grid", "HIST_SAMPLE"]
