"""BatchNorm in every hidden layer (keras `layers.BatchNormalization`), before or after the ReLU."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import setting


@register_regularizer("batchnorm")
class BatchNorm(Regularizer):
    """nn.BatchNorm1d(width) right after each hidden Linear layer (--bn-position before, the default) or after its
    ReLU. Training batches of one example cannot be normalized: batch size 1 is refused up front."""

    settings = (setting("batchnorm", bool, False, "BatchNorm1d in every hidden layer", "regularization"),
                setting("bn_position", str, "before", "BatchNorm before or after the ReLU", "regularization",
                        choices=("before", "after")))
    presets = {"batchnorm": {"batchnorm": True}}

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return bool(values.get("batchnorm", False))

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        if cls.enabled(values) and values.get("batch_size", 2) < 2:  # one example has no batch variance
            return (f"--batch-size {values['batch_size']}: BatchNorm (--batchnorm, --reg batchnorm) cannot train on "
                    "one-example batches; use --batch-size 2 or more")
        return None

    def hidden_block(self, block: list, width: int, index: int) -> list:
        from torch import nn

        at = 0 if self.bn_position == "before" else 1  # the block starts as [ReLU]
        return [*block[:at], nn.BatchNorm1d(width), *block[at:]]

    def describe(self) -> str:
        return "BatchNorm" + (" (after ReLU)" if self.bn_position == "after" else "")
