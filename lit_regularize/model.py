"""The one LightningModule: an MLP whose capacity and regularizers are config switches."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Literal, Optional

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchmetrics

from lit_regularize.optim import RMSprop
from lit_regularize.penalties import weight_penalty
from lit_regularize.sparse import MultiHotLinear

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "rmsprop": RMSprop,  # torch's, with a zero-safe square root (lit_regularize/optim.py)
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def build_mlp(n_features: int, n_outputs: int, hidden: int, layers: int, dropout: float = 0.0,
              batchnorm: bool = False, bn_position: str = "before") -> nn.Sequential:
    """input -> layers x (Linear -> [BatchNorm] -> ReLU -> [Dropout]) -> Linear(n_outputs)."""
    modules: list[nn.Module] = []
    width_in = n_features
    for i in range(layers):
        modules.append(MultiHotLinear(width_in, hidden) if i == 0 else nn.Linear(width_in, hidden))
        block: list[nn.Module] = [nn.ReLU()]
        if batchnorm:
            block.insert(0 if bn_position == "before" else 1, nn.BatchNorm1d(hidden))
        if dropout > 0:
            block.append(nn.Dropout(dropout))
        modules += block
        width_in = hidden
    modules.append(nn.Linear(width_in, n_outputs))
    return nn.Sequential(*modules)


class RegularizedMLP(pl.LightningModule):
    """MLP classifier; 1 logit + BCE for two classes, else n_classes logits + cross-entropy.

    The constructor takes model and optimization settings only, so a checkpoint loads with
    `RegularizedMLP.load_from_checkpoint(path)` and carries no run paths.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = 16, layers: int = 2, dropout: float = 0.0,
                 batchnorm: bool = False, bn_position: Literal["before", "after"] = "before", l1: float = 0.0,
                 l2: float = 0.0, l1_layers: Optional[list[int]] = None, l2_layers: Optional[list[int]] = None,
                 optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop", lr: float = 1e-3,
                 weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.l1, self.l2, self.l1_layers, self.l2_layers = l1, l2, l1_layers, l2_layers
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.binary = n_classes == 2
        self.net = build_mlp(n_features, 1 if self.binary else n_classes, hidden, layers, dropout, batchnorm,
                             bn_position)
        task = {"task": "binary"} if self.binary else {"task": "multiclass", "num_classes": n_classes}
        self.val_acc = torchmetrics.Accuracy(**task)
        self.test_acc = torchmetrics.Accuracy(**task)
        # Training accuracy as keras reports it (dropout active); validate_args off: ~65 µs a step instead of ~110.
        self.train_acc = torchmetrics.Accuracy(**task, validate_args=False)
        self.val_loss = torchmetrics.MeanMetric(nan_strategy="disable")
        # nan_strategy "disable": a NaN loss must show as NaN (MeanMetric's default drops it), so runs stop on it.
        # Accumulated per step and logged once per epoch: self.log costs ~1 ms a call, a third of a small step.
        self.train_loss = torchmetrics.MeanMetric(nan_strategy="disable")
        self.train_penalty = torchmetrics.MeanMetric(nan_strategy="disable")
        self.test_loss = torchmetrics.MeanMetric(nan_strategy="disable")
        self.test_prefix = "test"  # run() sets test_best / test_last before each test pass

    # -- pieces ---------------------------------------------------------------------------------------
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order (the last is the output layer)."""
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: Any) -> torch.Tensor:
        out = self.net(x)
        return out.squeeze(-1) if self.binary else out

    def data_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean BCE-with-logits or cross-entropy."""
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits, y.float())
        return F.cross_entropy(logits, y)

    def penalty(self) -> torch.Tensor:
        """The L1/L2 weight penalty (zero when both strengths are 0)."""
        return weight_penalty(self.linears(), {"l1": self.l1, "l2": self.l2},
                              {"l1": self.l1_layers, "l2": self.l2_layers})

    def _preds(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).long() if self.binary else logits.argmax(-1)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Lightning's generic walk over the (MultiHot, y) batch costs ~1 ms a step; on the CPU there is nothing to move.
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- steps ----------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.data_loss(logits, y)
        _add_batch_mean(self.train_loss, loss.detach(), len(y))
        self.train_acc.update(self._preds(logits.detach()), y.long())
        if self.l1 or self.l2:
            penalty = self.penalty()
            _add_batch_mean(self.train_penalty, penalty.detach(), len(y))
            loss = loss + penalty
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()
        self.train_penalty.reset()
        self.train_acc.reset()

    def train_epoch_metrics(self) -> dict[str, float]:
        """This epoch's mean data loss, accuracy (and penalty, when there is one) so far."""
        out = {"train/loss": float(self.train_loss.compute()), "train/acc": float(self.train_acc.compute())}
        if self.l1 or self.l2:
            out["train/penalty"] = float(self.train_penalty.compute())
        return out

    def on_train_epoch_end(self) -> None:
        for key, value in self.train_epoch_metrics().items():
            self.log(key, value)

    def _eval_step(self, batch: Any, loss_metric: torchmetrics.Metric, acc: torchmetrics.Metric) -> None:
        x, y = batch
        logits = self(x)
        _add_batch_mean(loss_metric, self.data_loss(logits, y), len(y))
        acc.update(self._preds(logits), y.long())

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss, self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss, self.test_acc)

    def on_test_epoch_end(self) -> None:
        self.log(f"{self.test_prefix}/loss", self.test_loss.compute())
        self.log(f"{self.test_prefix}/acc", self.test_acc.compute())
        self.test_loss.reset()
        self.test_acc.reset()

    # -- optimization ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer_name](self.parameters(), lr=self.lr)

    def _decayed(self) -> Iterator[torch.Tensor]:
        return (lin.weight for lin in self.linears())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Decoupled decay (AdamW-style) for every optimizer: shrink weights before the update, not via grads.
        if self.weight_decay:
            with torch.no_grad():
                for w in self._decayed():
                    w.mul_(1.0 - self.lr * self.weight_decay)


def _add_batch_mean(metric: torchmetrics.MeanMetric, batch_mean: torch.Tensor, n: int) -> None:
    """Add a batch's mean to an epoch mean over examples (a short last batch counts by its size).

    The mean is entered once per example rather than with `weight=n`: with nan_strategy="disable" torchmetrics
    (1.9) replaces the weights by ones, which made every epoch mean an unweighted mean of batch means."""
    metric.update(batch_mean.expand(n))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (what keras' summary calls trainable params)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_summary(model: RegularizedMLP) -> str:
    """The network layer by layer with parameter counts (what keras' model.summary() shows)."""
    rows = []
    for i, m in enumerate(model.net):
        if isinstance(m, nn.Linear):
            what = f"Linear({m.in_features} -> {m.out_features})"
        elif isinstance(m, nn.BatchNorm1d):
            what = f"BatchNorm1d({m.num_features})"
        elif isinstance(m, nn.Dropout):
            what = f"Dropout({m.p})"
        else:
            what = type(m).__name__
        rows.append(f"  {i:>2}  {what:<28s} {count_parameters(m):>12,d}")
    head = f"  {'#':>2}  {'layer':<28s} {'parameters':>12s}"
    return "\n".join([head, *rows, f"  {'':>2}  {'total':<28s} {count_parameters(model):>12,d}"])


__all__ = ["RegularizedMLP", "build_mlp", "count_parameters", "layer_summary", "OPTIMIZERS"]
