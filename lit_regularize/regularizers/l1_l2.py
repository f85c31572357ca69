"""L1 and L2 together (keras `regularizers.l1_l2`): a preset of the two penalties, each its own regularizer."""
from __future__ import annotations

from lit_regularize.regularizers.base import Regularizer, register_regularizer


@register_regularizer("l1_l2")
class L1L2(Regularizer):
    """Switches on L1 1e-4 and L2 1e-3 at once; the penalties themselves are the l1 and l2 regularizers'."""

    presets = {"l1_l2": {"l1": 1e-4, "l2": 1e-3}}
    population = True
