"""Weight penalties added to the training loss (keras' kernel_regularizer semantics): what L1 and L2 share.

torch is imported inside the functions: regularizer modules import this one to declare their settings, and
declaring settings must stay cheap (`--help` answers without loading torch).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from lit_regularize.regularizers.base import Regularizer
from lit_regularize.settings import Setting, at_least, setting


def penalty_settings(name: str, formula: str) -> tuple[Setting, Setting]:
    """The strength --NAME and the layer list --NAME-layers of a weight penalty."""
    return (setting(name, float, 0.0, f"{name.upper()} penalty strength: {formula}", "regularization",
                    check=at_least(0)),
            setting(f"{name}_layers", list, None, f"Linear layers (0-based, LAYERS = output) the {name.upper()} "
                    "penalty covers (default: all hidden)", "regularization", optional=True, metavar="I"))


class WeightPenalty(Regularizer):
    """strength * norm(W) over the chosen Linear weight matrices (not biases, not BatchNorm; default: every hidden
    layer, the output layer only when --NAME-layers names it). Subclasses declare settings and `norm`."""

    population = True  # the penalty reads linears() only

    @staticmethod
    def term(w: Any) -> Any:
        """The penalty's elementwise term (its norm is the sum of it), before multiplying by the strength."""
        raise NotImplementedError

    @staticmethod
    def term_grad(w: Any) -> Any:
        """The derivative of `term` (what a population's penalty adds to the weights' gradients)."""
        raise NotImplementedError

    @classmethod
    def norm(cls, w: Any) -> Any:
        """The penalty of one weight matrix, before multiplying by the strength."""
        return cls.term(w).sum()

    @classmethod
    def population_penalty(cls, members: Sequence[Optional["Regularizer"]], views: Sequence[Any],
                           stacked: Sequence[Any]) -> Any:
        # every member at once: a per-member strength times the norm of each stacked (K, in, out) weight, summed in
        # the weight's memory order and differentiated by hand (weighted_term_sums): autograd over abs().sum((1, 2))
        # of the member-minor first layer cost 4.5 ms a step for 12 IMDB members, this 0.7 ms
        import torch

        from lit_regularize.population.stack import weighted_term_sums

        if cls.term is WeightPenalty.term:  # a subclass that only overrides norm: each member's own penalty
            return Regularizer.population_penalty.__func__(cls, members, views, stacked)
        n_hidden = len(stacked) - 1
        total = stacked[0].new_zeros(len(members))
        for i, w in enumerate(stacked):
            strengths = [0.0 if r is None or i not in _layers(r, n_hidden) else float(r.values[cls.name])
                         for r in members]
            if any(strengths):
                s = torch.tensor(strengths, dtype=w.dtype, device=w.device)
                total = total + weighted_term_sums(w, s, cls.term, cls.term_grad)
        return total

    @classmethod
    def enabled(cls, values: Mapping[str, Any]) -> bool:
        return bool(values.get(cls.name, 0.0))

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> Optional[str]:
        n_hidden = int(values.get("layers", 2))
        for i in values.get(f"{cls.name}_layers") or []:
            if not 0 <= int(i) <= n_hidden:
                return f"--{cls.name}-layers: layer {i} out of range 0..{n_hidden} ({n_hidden} = output)"
        return None

    def penalty(self, model: Any) -> Any:
        return weight_penalty(model.linears(), self.values[self.name], self.values[f"{self.name}_layers"],
                              self.norm)

    def describe(self) -> str:
        return f"{self.name.upper()} {self.values[self.name]:g}"


def _layers(r: Regularizer, n_hidden: int) -> Sequence[int]:
    chosen = r.values[f"{r.name}_layers"]
    return range(n_hidden) if chosen is None else [int(i) for i in chosen]


def weight_penalty(linears: Sequence[Any], strength: float, layers: Optional[Sequence[int]], norm: Any) -> Any:
    """strength * norm(W) summed over the chosen Linear weights (default: every layer but the output layer)."""
    total = linears[0].weight.new_zeros(())
    for i in range(len(linears) - 1) if layers is None else layers:
        total = total + strength * norm(linears[i].weight)
    return total
