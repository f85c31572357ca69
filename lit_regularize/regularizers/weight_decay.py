"""Decoupled weight decay (AdamW-style, Loshchilov & Hutter 2019): weights shrink by lr * wd before every step."""
from __future__ import annotations

from typing import Any

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import at_least, setting


@register_regularizer("weight_decay")
class WeightDecay(Regularizer):
    """W <- W * (1 - lr * wd) for every Linear weight matrix (not biases, not BatchNorm), before the optimizer's
    update and for every optimizer alike; apart from --l2, which adds a gradient instead."""

    settings = (setting("weight_decay", float, 0.0, "decoupled weight decay (AdamW-style), separate from --l2",
                        "regularization", check=at_least(0)),)
    search = {"weight_decay": {"type": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True}}
    population = True

    def before_step(self, model: Any, optimizer: Any) -> None:
        import torch

        with torch.no_grad():
            for lin in model.linears():
                lin.weight.mul_(1.0 - model.lr * self.weight_decay)

    def describe(self) -> str:
        return f"weight decay {self.weight_decay:g}"
