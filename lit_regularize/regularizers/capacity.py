"""Capacity: the network's width and depth, the first thing the notebooks tune (4, 16 or 512 units)."""
from __future__ import annotations

from lit_regularize.regularizers.base import SHAPE, Regularizer, register_regularizer
from lit_regularize.settings import at_least, setting


@register_regularizer("capacity")
class Capacity(Regularizer):
    """LAYERS hidden layers of HIDDEN units: the model's own shape arguments, never a switch that is on or off."""

    applies_to = SHAPE
    population = True
    settings = (setting("hidden", int, 16, "hidden width (units per layer)", "model", check=at_least(1)),
                setting("layers", int, 2, "number of hidden layers", "model", check=at_least(1)))

    @classmethod
    def enabled(cls, values: dict) -> bool:  # type: ignore[override]
        return False  # hidden and layers are RegularizedMLP's own arguments

    def describe(self) -> str:
        return f"{self.layers} x {self.hidden} units"
