"""Spectral normalization (Miyato et al. 2018) of every hidden Linear layer: W / sigma_max(W)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from lit_regularize.regularizers.base import Regularizer, register_regularizer
from lit_regularize.settings import setting


@register_regularizer("spectral_norm")
class SpectralNorm(Regularizer):
    """torch.nn.utils.parametrizations.spectral_norm on each hidden Linear layer (the sparse first one too): the
    layer multiplies by W / sigma, sigma its largest singular value estimated by one power iteration per training
    forward pass; at the end of every epoch's training the iteration is run to convergence, so validation and the
    checkpoints use the weights' own sigma (kept in the state dict: predict and export use the same W / sigma).

    It has no strength to search: the bound is sigma = 1 (Miyato et al.); a sweep picks it as a `reg` choice."""

    settings = (setting("spectral_norm", bool, False, "spectral normalization of every hidden Linear layer "
                        "(W / largest singular value)", "regularization"),)
    presets = {"spectral_norm": {"spectral_norm": True}}  # Miyato et al. (2018): on, sigma = 1; nothing to tune

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return bool(values.get("spectral_norm", False))

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        if cls.enabled(values) and float(values.get("max_norm", 0.0)) > 0:
            # renorming W / sigma in place cannot work (it is computed), and its rows already have norm <= 1
            return ("--max-norm does not apply with --spectral-norm: a spectral-normed layer's units already have "
                    "incoming norms <= 1; use one of them")
        return None

    def hidden_linear(self, linear: Any, index: int) -> Any:
        from torch.nn.utils.parametrizations import spectral_norm

        return spectral_norm(linear)

    def callbacks(self) -> list:
        from lit_regularize.regularizers.spectral import SettleSpectralNorms

        return [SettleSpectralNorms()]

    def describe(self) -> str:
        return "spectral norm"
