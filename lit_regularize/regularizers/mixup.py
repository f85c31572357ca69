"""mixup (Zhang et al. 2018): train on convex combinations of pairs of examples and of their targets."""
from __future__ import annotations

from typing import Any, Mapping

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import at_least, setting


@register_regularizer("mixup")
class Mixup(Regularizer):
    """Every training batch becomes lambda * x + (1 - lambda) * x[perm] with targets mixed alike, lambda ~ Beta(A, A)
    and one random permutation per batch (Zhang et al. 2018). Images, multi-hot rows (densified: mixing makes their
    zeros fractional) and tabular rows alike; validation, test and predict see the examples as they are.

    Under mixup train/loss is the cross-entropy of the mixed batch against its mixed targets (what is optimized)
    and train/acc the share of mixed examples predicted as their dominant label (the one weighted >= 0.5); both
    read worse than on clean data by construction, so compare runs by val/* and test/*."""

    settings = (setting("mixup_alpha", float, 0.0, "mixup: train on lambda*x_i + (1-lambda)*x_j and the same mix of "
                        "their targets, lambda ~ Beta(A, A), one permutation per batch (0 = off)", "regularization",
                        metavar="A", check=at_least(0)),)
    # Zhang et al. (2018): alpha in [0.1, 0.4] worked best on ImageNet (larger alpha underfits); 0.2 is the middle
    presets = {"mixup": {"mixup_alpha": 0.2}}
    search = {"mixup_alpha": {"type": "float", "low": 0.05, "high": 1.0, "log": True}}

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return float(values.get("mixup_alpha", 0.0)) > 0

    def train_batch(self, model: Any, x: Any, y: Any) -> tuple[Any, Any]:
        import torch

        from lit_regularize.regularizers.layers import dense_inputs

        x = dense_inputs(x)
        # drawn on the CPU from torch's global generator (checkpointed by the run, so a resume draws the same)
        lam = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
        perm = torch.randperm(len(x)).to(x.device)
        targets = soft_targets(y, model.binary, model.hparams.n_classes)
        return mix(x, lam, perm), mix(targets, lam, perm)

    def describe(self) -> str:
        return f"mixup {self.mixup_alpha:g}"


def soft_targets(y: Any, binary: bool, n_classes: int) -> Any:
    """Targets as float probabilities: P(class 1) for one-logit models, else (N, C) rows (labels become one-hot)."""
    import torch.nn.functional as F

    if binary or y.dim() == 2:
        return y.float()
    return F.one_hot(y.long(), n_classes).float()


def mix(t: Any, lam: float, perm: Any) -> Any:
    """lam * t + (1 - lam) * t[perm], row-wise."""
    return lam * t + (1 - lam) * t[perm]
