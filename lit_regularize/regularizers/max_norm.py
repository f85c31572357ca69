"""Max-norm constraint (keras `constraints.MaxNorm`): each hidden unit's incoming weights kept at norm <= C."""
from __future__ import annotations

from typing import Any, Mapping

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import at_least, setting


@register_regularizer("max_norm")
class MaxNorm(Regularizer):
    """After every optimizer step, a hidden unit whose incoming weight vector (a row of `linear.weight`, the sparse
    first layer's too) is longer than C is scaled back to length C; shorter ones stay as they are. Biases and the
    output layer are not constrained (keras puts MaxNorm on hidden kernels only)."""

    settings = (setting("max_norm", float, 0.0, "after every optimizer step, rescale each hidden unit's incoming "
                        "weight vector to norm <= C (keras MaxNorm; 0 = off)", "regularization", metavar="C",
                        check=at_least(0)),)
    # Srivastava et al. (2014), the dropout paper, sec. 5.1 / appendix: "typical values of c range from 3 to 4"
    # (keras' MaxNorm default is 2)
    presets = {"max_norm": {"max_norm": 3.0}}
    search = {"max_norm": {"type": "float", "low": 0.5, "high": 5.0, "log": True}}
    population = True

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return float(values.get("max_norm", 0.0)) > 0

    def after_step(self, model: Any) -> None:
        import torch

        with torch.no_grad():
            for lin in model.linears()[:-1]:
                # renorm over dim 0: every row (= one unit's incoming weights) with 2-norm > C scaled to C;
                # in place, so MultiHotLinear's feature-major storage stays as it is
                lin.weight.renorm_(2, 0, self.max_norm)

    def describe(self) -> str:
        return f"max-norm {self.max_norm:g}"
