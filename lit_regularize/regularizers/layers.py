"""Layers the regularizer modules add to the network, and how to read weights the regularizers parametrize.
Imports torch: regularizer modules import this one inside their hooks only (declaring settings must stay cheap)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import nn


def dense_inputs(x: Any) -> Any:
    """A batch as a dense float tensor: a multi-hot CSR batch is expanded to its 0/1 rows (noise or mixing makes its
    zeros non-zero, so it cannot stay sparse), other batches are returned as they are."""
    from lit_regularize.data.multihot import MultiHot

    return x.to_dense() if isinstance(x, MultiHot) else x


class GaussianNoise(nn.Module):
    """x + N(0, std^2) in training mode (keras `layers.GaussianNoise`); the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return x + self.std * torch.randn_like(x)  # torch's global generator: checkpointed, so resume is exact

    def exported(self) -> Optional[nn.Module]:
        """What an exported (eval-mode, pure torch) network has in its place: nothing, it is the identity there."""
        return None

    def extra_repr(self) -> str:
        return f"std={self.std:g}"


SPECTRAL = ".parametrizations.weight."  # state-dict keys of a spectral-normed weight: original, 0._u, 0._v


def effective_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict with every spectral-normed weight as the layer computes with it in eval mode:
    original / (u . original v) under the plain key `<layer>.weight` (what reports and weight figures read)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(SPECTRAL + "original"):
            layer = key[: -len(SPECTRAL + "original")]
            u, v = state_dict.get(f"{layer}{SPECTRAL}0._u"), state_dict.get(f"{layer}{SPECTRAL}0._v")
            sigma = torch.dot(u, torch.mv(value, v)) if u is not None and v is not None else 1.0
            out[f"{layer}.weight"] = value / sigma  # torch's spectral_norm in eval mode, for a 2-D weight
        elif SPECTRAL not in key:
            out[key] = value
    return out


@contextlib.contextmanager
def reading_weights(module: nn.Module) -> Iterator[nn.Module]:
    """The module in eval mode while its weights are read (histograms, statistics): a spectral-normed weight read
    in training mode would run a power iteration, so reading it would change the run."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


__all__ = ["GaussianNoise", "dense_inputs", "effective_state_dict", "reading_weights"]
