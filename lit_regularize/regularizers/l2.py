"""L2 weight penalty (keras `regularizers.l2`): lambda * sum W^2 added to the training loss; shrinks big weights."""
from __future__ import annotations

from typing import Any

from lit_regularize.penalties import WeightPenalty, penalty_settings
from lit_regularize.regularizers.base import register_regularizer


@register_regularizer("l2")
class L2(WeightPenalty):
    """lambda * sum W^2 over the hidden layers' weights (or --l2-layers)."""

    settings = penalty_settings("l2", "lambda * sum W^2")
    presets = {"l2": {"l2": 1e-3}}  # the notebooks' (and Chollet's book's) 0.001 (keras' l2() default is 0.01)
    search = {"l2": {"type": "float", "low": 1.0e-5, "high": 1.0e-2, "log": True}}

    @staticmethod
    def term(w: Any) -> Any:
        return w.square()

    @staticmethod
    def term_grad(w: Any) -> Any:
        return 2 * w
