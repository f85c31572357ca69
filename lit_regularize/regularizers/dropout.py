"""Dropout after every hidden activation (keras `layers.Dropout`): random units zeroed while training only."""
from __future__ import annotations

from typing import Any, Mapping

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import in_range, setting


@register_regularizer("dropout")
class Dropout(Regularizer):
    """nn.Dropout(rate) at the end of every hidden block (after the ReLU, and after BatchNorm when both are on)."""

    settings = (setting("dropout", float, 0.0, "dropout rate after each hidden activation, in [0, 1)",
                        "regularization", check=in_range(0.0, 1.0)),)
    presets = {"dropout": {"dropout": 0.5}}  # Srivastava et al. (2014) and the notebooks: 0.5 for hidden units
    search = {"dropout": {"type": "float", "low": 0.1, "high": 0.7}}
    population = True

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return float(values.get("dropout", 0.0)) > 0

    def hidden_block(self, block: list, width: int, index: int) -> list:
        from torch import nn

        return [*block, nn.Dropout(self.dropout)]

    def member_hidden(self, h: Any, index: int, generator: Any) -> Any:
        # what nn.Dropout computes on the CPU (ATen's _dropout_impl): a Bernoulli(1 - p) mask scaled by 1 / (1 - p)
        keep = 1.0 - self.dropout
        return h * h.new_empty(h.shape).bernoulli_(keep, generator=generator).div_(keep)

    def describe(self) -> str:
        return f"dropout {self.dropout:g}"
