"""Label smoothing (Szegedy et al. 2016): cross-entropy against targets moved EPS of the way to uniform."""
from __future__ import annotations

from typing import Any, Mapping

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import in_range, setting


@register_regularizer("label_smoothing")
class LabelSmoothing(Regularizer):
    """The training loss uses targets y(1 - EPS) + EPS/C (C classes; the one-logit binary model: y(1 - EPS) + EPS/2).

    Only the optimized loss changes: train/loss, val/loss and test/* stay the plain data loss, so runs with and
    without smoothing compare; the smoothed loss is logged as train/smoothed_loss."""

    settings = (setting("label_smoothing", float, 0.0, "train on smoothed targets y(1-EPS) + EPS/classes (binary: "
                        "EPS/2); val/test losses stay plain", "regularization", metavar="EPS",
                        check=in_range(0.0, 1.0)),)
    presets = {"label_smoothing": {"label_smoothing": 0.1}}  # Szegedy et al. (2016), Inception-v3: eps = 0.1
    search = {"label_smoothing": {"type": "float", "low": 0.01, "high": 0.3, "log": True}}
    train_loss_name = "train/smoothed_loss"
    population = True

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return float(values.get("label_smoothing", 0.0)) > 0

    def train_loss(self, model: Any, logits: Any, y: Any) -> Any:
        import torch.nn.functional as F

        eps = self.label_smoothing
        if model.binary:
            return F.binary_cross_entropy_with_logits(logits, y.float() * (1 - eps) + eps / 2)
        return F.cross_entropy(logits, y, label_smoothing=eps)  # also for mixup's soft targets (N, C)

    def describe(self) -> str:
        return f"label smoothing {self.label_smoothing:g}"
