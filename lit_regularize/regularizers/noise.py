"""Additive Gaussian noise while training (keras `layers.GaussianNoise`): on the inputs, the hidden units, or both."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import at_least, setting

PLACES = ("input", "hidden", "both")


@register_regularizer("noise")
class GaussianNoise(Regularizer):
    """N(0, S^2) added to the training inputs (--noise-on input; a multi-hot batch is densified first: noise makes
    every zero non-zero), to every hidden block's output (hidden: after its ReLU, BatchNorm and dropout), or both.
    Training only: validation, test, predict and export see no noise (the hidden noise layers are dropped)."""

    settings = (setting("noise_std", float, 0.0, "additive Gaussian noise N(0, S^2) while training (keras "
                        "GaussianNoise; 0 = off); none in eval, predict or export", "regularization", metavar="S",
                        check=at_least(0)),
                setting("noise_on", str, "input", "where --noise-std adds noise: the input batch (multi-hot batches "
                        "are densified), every hidden block's output, or both", "regularization", choices=PLACES))
    # 0.1: a tenth of the inputs' own scale (images are standardized to std 1, multi-hot entries are 0/1): small
    # input noise acts like a Tikhonov (L2-like) penalty (Bishop 1995, "Training with noise is equivalent to
    # Tikhonov regularization")
    presets = {"noise": {"noise_std": 0.1}}
    search = {"noise_std": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return float(values.get("noise_std", 0.0)) > 0

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        if values.get("noise_on", "input") != "input" and not cls.enabled(values):
            return f"--noise-on {values['noise_on']} only applies with --noise-std S > 0 (or --reg noise)"
        return None

    def train_batch(self, model: Any, x: Any, y: Any) -> tuple[Any, Any]:
        import torch

        from lit_regularize.regularizers.layers import dense_inputs

        if self.noise_on == "hidden":
            return x, y
        x = dense_inputs(x)
        return x + self.noise_std * torch.randn_like(x), y

    def hidden_block(self, block: list, width: int, index: int) -> list:
        if self.noise_on == "input":
            return block
        from lit_regularize.regularizers.layers import GaussianNoise as NoiseLayer

        return [*block, NoiseLayer(self.noise_std)]

    def describe(self) -> str:
        return f"Gaussian noise {self.noise_std:g} ({self.noise_on})"
