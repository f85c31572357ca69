"""K MLPs of one shape as one model: stacked weights, batched matrix products, each member its own batch.

Member k's Linear i is `weights[i][k]` (in, out: feature-major, like MultiHotLinear's storage) and `biases[i][k]`.
One forward takes a batch per member (their sizes may differ): a multi-hot first layer is one embedding_bag over
the K weight tables stacked as rows (member k's word w is row k * in + w), a dense one a batched matmul; hidden and
output layers are batched matmuls over (K, rows, width). The loss sums the members' losses, so member k's gradient
is exactly its own: a population trains K independent models, only faster.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_regularize.data.multihot import MultiHot


class StackedRows(NamedTuple):
    """Multi-hot batches of K members as one CSR matrix: `width` rows per member, member-major (member k's rows
    are k * width ...), member k's word ids offset by k * n_features (its rows of the stacked weight table)."""

    crow: torch.Tensor
    cols: torch.Tensor


def stack_multihot(xs: Sequence[MultiHot], width: int) -> StackedRows:
    """StackedRows of each member's own batch (fewer than `width` rows: padded with empty rows)."""
    crows, cols = [], []
    start = 0
    for k, x in enumerate(xs):
        n = len(x.crow) - 1
        crows += [x.crow[:-1] + start, x.crow.new_full((width - n,), start + int(x.crow[-1]))]
        cols.append(x.cols + k * x.n_features)
        start += int(x.crow[-1])
    return StackedRows(torch.cat([*crows, torch.tensor([start], dtype=torch.long)]), torch.cat(cols))


class _BagSum(torch.autograd.Function):
    """X @ W for stacked 0/1 CSR rows (StackedRows): forward is one embedding_bag sum over the stacked table;
    backward adds each row's gradient to its words' rows with index_add_, member by member (a member's 10,000 x 16
    table stays in cache). On real IMDB batches of 12 x 512 reviews: 8 ms a step, as fast as sparse.py's transposed
    CSR product member by member (its argsort costs what the scatter saves), against 35 ms for one index_add_ over
    the whole stack (frequent words of different members collide in cache) and 20 ms for one CSR product;
    two threads made it slower."""

    @staticmethod
    def forward(ctx, crow: torch.Tensor, cols: torch.Tensor, weight: torch.Tensor, members: int) -> torch.Tensor:
        ctx.save_for_backward(crow, cols)
        ctx.members, ctx.n_rows = members, weight.shape[0]
        return F.embedding_bag(cols, weight, crow, mode="sum", include_last_offset=True)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        crow, cols = ctx.saved_tensors
        K = ctx.members
        width, n_in = grad_out.shape[0] // K, ctx.n_rows // K
        bounds = crow[::width].tolist()
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1, device=cols.device), crow[1:] - crow[:-1],
                                       output_size=len(cols))
        grad = grad_out.new_zeros(ctx.n_rows, grad_out.shape[1])
        for k in range(K):  # member by member: its rows of the table stay in cache
            part = slice(bounds[k], bounds[k + 1])
            grad.index_add_(0, cols[part], grad_out.index_select(0, rows[part]))
        return None, None, grad, None


class MemberLinear:
    """One member's view of a stacked Linear: `weight` (out, in) and `bias` as views into the stacked tensors, so a
    regularizer's hook (a penalty, decay, a max-norm constraint) reads and changes that member alone."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias


class MemberView:
    """What a regularizer's training hooks read of a model (`linears()`, `lr`, `binary`), for member k of a stack."""

    def __init__(self, stack: "StackedMLP", k: int, lr: float) -> None:
        self.stack, self.k, self.lr, self.binary = stack, k, lr, stack.binary

    def linears(self) -> list[MemberLinear]:
        """The member's Linear layers in order (the last is the output layer), as (out, in) weight views."""
        return [MemberLinear(w[self.k].t(), b[self.k]) for w, b in zip(self.stack.weights, self.stack.biases)]


class StackedMLP(nn.Module):
    """The stacked weights of K RegularizedMLP members (same hidden, layers, inputs and outputs)."""

    def __init__(self, linears: Sequence[Sequence[nn.Linear]], binary: bool) -> None:
        """linears: each member's Linear layers (RegularizedMLP.linears()), whose current values are copied."""
        super().__init__()
        self.binary = binary
        n_layers = len(linears[0])
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([m[i].weight.detach().t() for m in linears]).contiguous())
             for i in range(n_layers)])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([m[i].bias.detach() for m in linears]).contiguous()) for i in range(n_layers)])

    @property
    def size(self) -> int:
        """The number of members."""
        return self.weights[0].shape[0]

    @property
    def n_features(self) -> int:
        """Input width."""
        return self.weights[0].shape[1]

    def member_state(self, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Member k's (weight (out, in), bias) per layer, as copies."""
        return [(w[k].detach().t().clone(), b[k].detach().clone()) for w, b in zip(self.weights, self.biases)]

    def keep(self, members: Sequence[int]) -> None:
        """Only these members (in this order) stay: a stopped member costs nothing more."""
        idx = torch.as_tensor(list(members), dtype=torch.long, device=self.weights[0].device)
        for params in (self.weights, self.biases):
            for i in range(len(params)):
                params[i] = nn.Parameter(params[i].detach().index_select(0, idx).contiguous())

    def first_layer(self, xs: Any, width: int) -> torch.Tensor:
        """(K, width, hidden): member k's batch xs[k] (its rows padded with zero inputs to `width` rows) times its
        first weight matrix, plus its bias; xs may be StackedRows already."""
        W, b = self.weights[0], self.biases[0]
        K, n_in = W.shape[0], W.shape[1]
        if isinstance(xs, StackedRows) or isinstance(xs[0], MultiHot):
            rows = xs if isinstance(xs, StackedRows) else stack_multihot(xs, width)
            out = _BagSum.apply(rows.crow.to(W.device), rows.cols.to(W.device), W.reshape(K * n_in, W.shape[2]), K)
            return out.view(K, width, -1) + b.unsqueeze(1)
        if all(len(x) == width for x in xs):
            x = torch.stack([x.flatten(1) for x in xs]).to(W.device, W.dtype)
        else:
            x = W.new_zeros(K, width, n_in)
            for k, xk in enumerate(xs):
                x[k, :len(xk)] = xk.flatten(1).to(W.device, W.dtype)
        return torch.baddbmm(b.unsqueeze(1), x, W)

    def forward(self, xs: Sequence[Any], width: int, blocks: Optional[Any] = None) -> torch.Tensor:
        """Logits (K, width) for one logit (binary), else (K, width, classes); `blocks(h, i)` changes the (K, width,
        hidden) activations after hidden layer i's ReLU (dropout) while training."""
        h = self.first_layer(xs, width)
        for i in range(1, len(self.weights)):
            h = F.relu(h)
            if blocks is not None:
                h = blocks(h, i - 1)
            h = torch.baddbmm(self.biases[i].unsqueeze(1), h, self.weights[i])
        return h.squeeze(-1) if self.binary else h


__all__ = ["StackedMLP", "MemberView", "MemberLinear", "StackedRows", "stack_multihot"]
