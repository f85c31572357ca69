"""RMSprop, Adam and SGD for stacked weights: each member its own learning rate, step count and say in a step.

Written here because torch's optimizers take one learning rate per parameter tensor and update every element of
it: a population needs member k's slice updated with its own lr, and left alone when it had no batch this step.
The formulas are torch's (defaults included): member k's slice follows exactly the path torch.optim would give a
single run with that lr (up to float summation order in the gradients).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from lit_regularize.population.stack import same_layout

DEFAULTS = {"rmsprop": {"alpha": 0.99, "eps": 1e-8}, "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
            "sgd": {}}


class StackedOptimizer:
    """Updates a list of stacked parameters (K, ...) in place; member k uses lr[k]."""

    def __init__(self, name: str, params: Sequence[torch.nn.Parameter], lr: Sequence[float]) -> None:
        if name not in DEFAULTS:
            raise ValueError(f"no stacked optimizer {name!r}")
        self.name, self.params = name, list(params)
        self.lr = torch.tensor(list(lr), dtype=self.params[0].dtype, device=self.params[0].device)
        self.steps = torch.zeros(len(lr), dtype=torch.float64, device=self.params[0].device)
        self.state: list[dict[str, torch.Tensor]] = [self._fresh(p) for p in self.params]

    def _fresh(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.name == "rmsprop":
            return {"square_avg": torch.zeros_like(p)}
        if self.name == "adam":
            return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        return {}

    def _per_member(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(K,) values shaped to broadcast over a (K, ...) tensor."""
        return values.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    @torch.no_grad()
    def step(self, active: Optional[torch.Tensor] = None) -> None:
        """One update of every member, or only of those where `active` (bool, (K,)) is True."""
        if active is not None and bool(active.all()):
            active = None
        saved = None
        if active is not None:  # rare (a member without a batch this step): restore the others afterwards
            off = ~active
            saved = ([p[off].clone() for p in self.params],
                     [{k: v[off].clone() for k, v in s.items()} for s in self.state], self.steps[off].clone())
        self.steps += 1
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            self._update(p, p.grad, state)
        if saved is not None:
            params, states, steps = saved
            for p, old in zip(self.params, params):
                p[off] = old
            for state, old_state in zip(self.state, states):
                for k, v in old_state.items():
                    state[k][off] = v
            self.steps[off] = steps

    def _update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        lr = self._per_member(self.lr, p)
        if self.name == "sgd":
            p.sub_(grad * lr)
        elif self.name == "rmsprop":
            d = DEFAULTS["rmsprop"]
            v = state["square_avg"]
            v.mul_(d["alpha"]).addcmul_(grad, grad, value=1 - d["alpha"])
            # the zero-safe root of lit_regularize.optim.RMSprop (same values, fast on CPU zeros)
            avg = v.clamp_min(torch.finfo(v.dtype).tiny).sqrt_().add_(d["eps"])
            p.sub_(grad / avg * lr)
        else:
            d = DEFAULTS["adam"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(grad, 1 - d["beta1"])
            v.mul_(d["beta2"]).addcmul_(grad, grad, value=1 - d["beta2"])
            # bias corrections in double precision, as torch computes them (Python floats)
            step_size = self.lr.double() / (1 - d["beta1"] ** self.steps)
            bias2_sqrt = (1 - d["beta2"] ** self.steps).sqrt()
            denom = (v.sqrt() / self._per_member(bias2_sqrt, p)).add_(d["eps"])
            p.sub_(m / denom * self._per_member(step_size, p))

    def zero_grad(self) -> None:
        """Drop the gradients (set_to_none, like torch)."""
        for p in self.params:
            p.grad = None

    def keep(self, members: Sequence[int], params: Sequence[torch.nn.Parameter]) -> None:
        """Only these members stay (StackedMLP.keep), with `params` the stack's new parameters."""
        idx = torch.as_tensor(list(members), dtype=torch.long, device=self.lr.device)
        self.params = list(params)
        self.lr, self.steps = self.lr[idx], self.steps[idx]
        self.state = [{k: same_layout(v.index_select(0, idx), p) for k, v in s.items()}
                      for s, p in zip(self.state, self.params)]

    def member_state(self, k: int) -> dict[str, Any]:
        """Member k's state (its step count and slices, as copies): what its last.ckpt keeps for a resume."""
        return {"name": self.name, "lr": float(self.lr[k]), "steps": float(self.steps[k]),
                "state": [{key: v[k].clone() for key, v in s.items()} for s in self.state]}

    def load_member(self, k: int, saved: dict[str, Any]) -> None:
        """Restore member k from member_state()."""
        self.steps[k] = saved["steps"]
        for s, old in zip(self.state, saved["state"]):
            for key, v in old.items():
                s[key][k] = v


__all__ = ["StackedOptimizer", "DEFAULTS"]
