"""Data augmentation of training images: a random rotation (10 deg) and resized crop (0.8-1.0), optional flips.

Its settings are arguments of the image DataModules, which augment every training batch on its device with a
seeded, checkpointed generator (`lit_regularize.data.augment`); validation, test and predict never see it. Its
settings apply to the kinds of the image family (lit_regularize.data.kinds: mnist, fashion_mnist, imagedir, ...).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from lit_regularize.regularizers.base import DATA, Regularizer, register_regularizer
from lit_regularize.settings import setting


@register_regularizer("augment")
class Augment(Regularizer):
    """The notebooks' torchvision v2 pipeline (RandomRotation(10), RandomResizedCrop(28, (0.8, 1.0))), batched."""

    applies_to = DATA
    settings = (setting("augment", bool, False, "images: random rotation (10 deg) + resized crop (0.8-1.0) of "
                        "training batches", "regularization", only=("image",)),
                setting("hflip", bool, False, "images: also random horizontal flips when augmenting (changes "
                        "digits)", "regularization", only=("image",)))

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return bool(values.get("augment", False))

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        if values.get("hflip") and not values.get("augment"):
            return "--hflip only applies with --augment"
        return None

    def describe(self) -> str:
        return "augmentation" + (" + flips" if self.hflip else "")
