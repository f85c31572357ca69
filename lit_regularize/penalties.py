"""Weight penalties added to the training loss (keras' kernel_regularizer semantics)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

# name -> penalty of one weight matrix, before multiplying by its strength
PENALTIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l1": lambda w: w.abs().sum(),
    "l2": lambda w: w.square().sum(),
}


def weight_penalty(linears: Sequence[nn.Linear], strengths: dict[str, float],
                   layers: dict[str, Optional[Sequence[int]]]) -> torch.Tensor:
    """Sum over penalties of strength * penalty(W) for the chosen Linear weights (default: all but the output)."""
    total = linears[0].weight.new_zeros(())
    for name, strength in strengths.items():
        if not strength:
            continue
        chosen = layers.get(name)
        indices = range(len(linears) - 1) if chosen is None else chosen
        for i in indices:
            total = total + strength * PENALTIES[name](linears[i].weight)
    return total
