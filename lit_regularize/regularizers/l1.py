"""L1 weight penalty (keras `regularizers.l1`): lambda * sum |W| added to the training loss; drives weights to 0."""
from __future__ import annotations

from typing import Any

from lit_regularize.penalties import WeightPenalty, penalty_settings
from lit_regularize.regularizers.base import register_regularizer


@register_regularizer("l1")
class L1(WeightPenalty):
    """lambda * sum |W| over the hidden layers' weights (or --l1-layers)."""

    settings = penalty_settings("l1", "lambda * sum|W|")
    presets = {"l1": {"l1": 1e-4}}  # the strength of the notebooks this lab replaces (keras' l1() default is 0.01)
    search = {"l1": {"type": "float", "low": 1.0e-6, "high": 1.0e-3, "log": True}}

    @staticmethod
    def term(w: Any) -> Any:
        return w.abs()

    @staticmethod
    def term_grad(w: Any) -> Any:
        return w.sign()
