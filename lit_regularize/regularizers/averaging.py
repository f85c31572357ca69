"""The weight-averaging callback of the weight_averaging regularizer (EMA or SWA), on torch.optim.swa_utils.

Built on torch's AveragedModel / update_bn rather than Lightning's WeightAveraging callback because that one keeps
the un-averaged weights in weights-only checkpoints (our best-epochNNN.ckpt: it only swaps in its full-checkpoint
hook), validates its initial copy of the weights before the first average, and updates an epoch average only
after that epoch's validation.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader

from lit_regularize.regularizers.spectral import settle_spectral_norms


class AveragedWeights(pl.Callback):
    """Keeps an average A of `pl_module.net` beside the trained weights W.

    EMA: A is updated after every optimizer step. SWA: after the last training batch of every epoch from
    `start_epoch` (1-based) on, so that epoch's validation sees it; BatchNorm statistics of A are then recomputed
    over the training set (torch's update_bn, batches in order, without augmentation, RNG untouched).

    The model holds A from the end of each epoch's training (its validation, or the epoch's end when nothing
    validates) until the next epoch starts: validation, checkpoints (best-*.ckpt and last.ckpt), the test passes
    after fit, and so predict and export all see A. last.ckpt also keeps W and the averaging state in this
    callback's state, so `fit --resume` continues both. Before the first average, everything uses W."""

    def __init__(self, kind: str, decay: float = 0.99, start_epoch: int = 1) -> None:
        if kind not in ("ema", "swa"):
            raise ValueError(f"weight averaging kind must be ema or swa, got {kind!r}")
        self.kind, self.decay, self.start_epoch = kind, decay, start_epoch
        self.average: Optional[AveragedModel] = None
        self.trained: Optional[dict[str, torch.Tensor]] = None  # W while the model holds A
        self._restored: Optional[dict[str, Any]] = None

    @property
    def state_key(self) -> str:
        return f"AveragedWeights[{self.kind}]"

    @property
    def n_averaged(self) -> int:
        """How many weight sets the average holds (0: none yet)."""
        return 0 if self.average is None else int(self.average.n_averaged)

    # -- set-up ---------------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.average is not None:
            return
        ema = self.kind == "ema"
        # EMA averages the buffers too (BatchNorm statistics, as timm / Lightning do); SWA recomputes them
        self.average = AveragedModel(pl_module.net, multi_avg_fn=get_ema_multi_avg_fn(self.decay) if ema else None,
                                     use_buffers=ema)
        if self._restored is not None:
            self.load_state_dict(self._restored)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.average is not None:
            self.average.to(pl_module.device)  # set up before the strategy moved the model to its device
        if self.kind == "swa" and self.start_epoch > trainer.max_epochs and trainer.is_global_zero:
            print(f"warning: --swa-start {self.start_epoch} is after --max-epochs {trainer.max_epochs}: no weights "
                  "will be averaged", file=sys.stderr)

    # -- averaging ------------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        assert self.average is not None
        if self.kind == "ema":
            self.average.update_parameters(pl_module.net)
        elif trainer.is_last_batch and trainer.current_epoch + 1 >= self.start_epoch:
            self.average.update_parameters(pl_module.net)
            self._recompute_batchnorm(trainer, pl_module)

    def _recompute_batchnorm(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """BatchNorm statistics of the averaged weights, over the training set in order (SWA's update_bn)."""
        assert self.average is not None
        loader = trainer.train_dataloader
        ordered = DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False,
                             collate_fn=loader.collate_fn)
        batches = (pl_module.transfer_batch_to_device(b, pl_module.device, 0) for b in ordered)
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout draws here must not shift training's random stream
            update_bn(batches, self.average.module)  # returns at once (reading no batch) without BatchNorm

    # -- which weights the model holds ----------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._hold_average(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._hold_average(pl_module)  # an epoch without validation; checkpoint callbacks run after this one

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trained is not None:
            pl_module.net.load_state_dict(self.trained)
            self.trained = None

    def _hold_average(self, pl_module: pl.LightningModule) -> None:
        if self.trained is not None or self.n_averaged == 0:
            return
        assert self.average is not None
        # averaged weights come with singular-vector estimates of other weights (SWA: left from the start; EMA:
        # averaged vectors, not of unit length), which spectral_norm's eval mode would divide by as they are
        settle_spectral_norms(self.average.module)
        self.trained = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        pl_module.net.load_state_dict(self.average.module.state_dict())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.kind == "swa" and self.n_averaged == 0 and trainer.is_global_zero:
            print(f"warning: training stopped after epoch {trainer.current_epoch + 1}, before --swa-start "
                  f"{self.start_epoch}: no weights were averaged; the run's weights are the trained ones",
                  file=sys.stderr)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.average is None:
            return {}
        return {"average": self.average.state_dict(), "trained": self.trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.average is None:  # restored before set-up: applied there
            self._restored = state_dict
            return
        self.average.load_state_dict(state_dict["average"])
        self.trained = state_dict["trained"]
        self._restored = None


__all__ = ["AveragedWeights"]
