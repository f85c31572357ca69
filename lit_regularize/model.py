"""The one LightningModule: an MLP whose capacity and regularizers are config switches."""
from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchmetrics

from lit_regularize.errors import ConfigError
from lit_regularize.optim import RMSprop
from lit_regularize.regularizers import Regularizer, create as create_regularizers
from lit_regularize.sparse import MultiHotLinear

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "rmsprop": RMSprop,  # torch's, with a zero-safe square root (lit_regularize/optim.py)
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def build_mlp(n_features: int, n_outputs: int, hidden: int, layers: int,
              regularizers: Sequence[Regularizer] = ()) -> nn.Sequential:
    """input -> layers x (Linear -> ReLU, as the regularizers change the block) -> Linear(n_outputs).

    The first Linear takes multi-hot CSR batches too (MultiHotLinear); with BatchNorm and dropout a block is
    Linear -> BatchNorm -> ReLU -> Dropout."""
    modules: list[nn.Module] = []
    width_in = n_features
    for i in range(layers):
        linear: nn.Module = MultiHotLinear(width_in, hidden) if i == 0 else nn.Linear(width_in, hidden)
        block: list[nn.Module] = [nn.ReLU()]
        for r in regularizers:
            linear = r.hidden_linear(linear, i)
            block = r.hidden_block(block, hidden, i)
        modules += [linear, *block]
        width_in = hidden
    modules.append(nn.Linear(width_in, n_outputs))
    return nn.Sequential(*modules)


class RegularizedMLP(pl.LightningModule):
    """MLP classifier; 1 logit + BCE for two classes, else n_classes logits + cross-entropy.

    The constructor takes model and optimization settings only, so a checkpoint loads with
    `RegularizedMLP.load_from_checkpoint(path)` and carries no run paths.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = 16, layers: int = 2,
                 optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop", lr: float = 1e-3,
                 **regularization: Any) -> None:
        """regularization: the settings of registered regularizers (dropout=0.5, l2=1e-3, batchnorm=True, ...),
        saved flat in the checkpoint's hyperparameters like the other arguments."""
        super().__init__()
        self.save_hyperparameters()
        self.optimizer_name, self.lr = optimizer, lr
        try:
            self.regularizers = create_regularizers(regularization)
        except TypeError as e:  # a checkpoint of a plug-in regularizer whose module was not imported
            raise ConfigError(str(e)) from None
        self.binary = n_classes == 2
        self.net = build_mlp(n_features, 1 if self.binary else n_classes, hidden, layers, self.regularizers)
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
        # a regularizer that optimizes another loss (label smoothing) has it logged under its own name
        replacing = [r for r in self.regularizers if r.replaces_loss]
        self.objective_name = replacing[-1].train_loss_name if replacing else None
        self.train_objective = torchmetrics.MeanMetric(nan_strategy="disable")
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

    @property
    def has_penalty(self) -> bool:
        """Whether a regularizer adds a term to the training loss (then train/penalty is logged)."""
        return any(r.has_penalty for r in self.regularizers)

    def penalty(self) -> torch.Tensor:
        """The regularizers' loss terms (L1, L2, ...) summed; zero without any."""
        total = self.linears()[0].weight.new_zeros(())
        for r in self.regularizers:
            term = r.penalty(self)
            if term is not None:
                total = total + term
        return total

    def _preds(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).long() if self.binary else logits.argmax(-1)

    def _labels(self, y: torch.Tensor) -> torch.Tensor:
        """Class ids of targets; soft targets (mixup: P(class 1), or (N, C) rows) count as their dominant class."""
        if y.dim() == 2:
            return y.argmax(-1)
        return (y >= 0.5).long() if y.is_floating_point() else y.long()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Lightning's generic walk over the (MultiHot, y) batch costs ~1 ms a step; on the CPU there is nothing to move.
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- steps ----------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        for r in self.regularizers:
            x, y = r.train_batch(self, x, y)
        logits = self(x)
        loss = self.data_loss(logits, y)
        _add_batch_mean(self.train_loss, loss.detach(), len(y))
        self.train_acc.update(self._preds(logits.detach()), self._labels(y))
        for r in self.regularizers:  # e.g. smoothed targets: optimized, while train/loss stays the data loss
            replaced = r.train_loss(self, logits, y)
            loss = loss if replaced is None else replaced
        if self.objective_name is not None:
            _add_batch_mean(self.train_objective, loss.detach(), len(y))
        if self.has_penalty:
            penalty = self.penalty()
            _add_batch_mean(self.train_penalty, penalty.detach(), len(y))
            loss = loss + penalty
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()
        self.train_penalty.reset()
        self.train_objective.reset()
        self.train_acc.reset()

    def train_epoch_metrics(self) -> dict[str, float]:
        """This epoch's mean data loss, accuracy (and penalty, when there is one) so far."""
        out = {"train/loss": float(self.train_loss.compute()), "train/acc": float(self.train_acc.compute())}
        if self.has_penalty:
            out["train/penalty"] = float(self.train_penalty.compute())
        if self.objective_name is not None:
            out[self.objective_name] = float(self.train_objective.compute())
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

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for r in self.regularizers:  # e.g. decoupled weight decay
            r.before_step(self, optimizer)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's step, then the regularizers' after_step hooks."""
        super().optimizer_step(*args, **kwargs)
        # e.g. max-norm constraints: right after the step, before any callback (weight averaging) reads the weights
        for r in self.regularizers:
            r.after_step(self)


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
