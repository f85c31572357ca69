"""K MLPs of one shape as one model: stacked weights, batched matrix products, each member its own batch.

Member k's Linear i is `weights[i][k]` (in, out: feature-major, like MultiHotLinear's storage) and `biases[i][k]`.
One forward takes a batch per member (their sizes may differ): a multi-hot first layer is one embedding_bag per group
of members that share their batches (GroupedRows; the first weight is stored (in, K, out) in memory so a group's rows
of a word are contiguous), a dense one a batched matmul; hidden and output layers are batched matmuls over
(K, rows, width). The loss sums the members' losses, so member k's gradient is exactly its own: a population trains
K independent models, only faster.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_regularize.data.multihot import MultiHot
from lit_regularize.sparse import csr_transpose


class GroupedRows(NamedTuple):
    """Multi-hot batches of K members in groups of consecutive members that share their rows (same seed, same
    split: the same batches): group g is members spans[g][0] .. spans[g][1] - 1 and its rows are the CSR
    (crows[g], cols[g]) over the table's words, padded with empty rows to the batch width."""

    spans: list[tuple[int, int]]
    crows: list[torch.Tensor]
    cols: list[torch.Tensor]


def padded_crow(crow: torch.Tensor, width: int) -> torch.Tensor:
    """A CSR row pointer extended with empty rows to `width` rows."""
    n = len(crow) - 1
    return crow if n == width else torch.cat([crow, crow[-1:].expand(width - n)])


def group_multihot(xs: Sequence[MultiHot], width: int) -> GroupedRows:
    """GroupedRows of each member's own batch (a group of one each), padded to `width` rows."""
    return GroupedRows([(k, k + 1) for k in range(len(xs))], [padded_crow(x.crow, width) for x in xs],
                       [x.cols for x in xs])


class _GroupedBag(torch.autograd.Function):
    """X @ W of a multi-hot first layer for GroupedRows, W (K, in, out) stored member-minor ((in, K, out) in
    memory, see StackedMLP): a group's members' rows of word w are one contiguous run of G x out floats, so a group
    is one embedding_bag over G x out-wide rows forward, and one over its transposed rows backward. Members that
    share their batches (a compare study at one seed) gather their rows once; each member alone (k-fold folds)
    costs what a member-major table did."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: GroupedRows) -> torch.Tensor:
        table = weight.permute(1, 0, 2)  # (in, K, out), contiguous
        n_in, _, out = table.shape
        parts = []
        for (a, b), crow, cols in zip(rows.spans, rows.crows, rows.cols):
            group = table[:, a:b].reshape(n_in, (b - a) * out)
            parts.append(F.embedding_bag(cols, group, crow, mode="sum", include_last_offset=True).view(-1, b - a, out))
        ctx.rows, ctx.shape = rows, table.shape
        return torch.cat(parts, 1).permute(1, 0, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        # A group's table gradient X^T @ G as an embedding_bag too, over the transposed rows (each word's bag:
        # the batch rows holding it, in row order, so the sums equal index_add_'s): on real IMDB batches of
        # 12 x 512 reviews, 4.7 ms a step for 3 groups of 4 and 1.9 ms for one group of 12, against 14-30 ms for
        # index_add_ scatters of the same rows; 15 ms against 24 ms for 12 groups of one (k-fold).
        n_in, K, out = ctx.shape
        rows = ctx.rows
        g = grad_out.permute(1, 0, 2)  # (width, K, out)
        parts = []
        for (a, b), crow, cols in zip(rows.spans, rows.crows, rows.cols):
            t_crow, t_cols = csr_transpose(crow, cols, n_in)
            group = g[:, a:b].reshape(-1, (b - a) * out)
            parts.append(F.embedding_bag(t_cols, group, t_crow, mode="sum", include_last_offset=True)
                         .view(n_in, b - a, out))
        grad = parts[0] if len(parts) == 1 else torch.cat(parts, 1)  # (in, K, out): the table's layout
        return grad.permute(1, 0, 2), None


def member_minor(w: torch.Tensor) -> torch.Tensor:
    """(K, in, out) weights stored as (in, K, out) in memory (the first layer's layout, see _GroupedBag)."""
    return w.permute(1, 0, 2).contiguous().permute(1, 0, 2)


def same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t (contiguous, fewer members) in like's memory layout: member-minor where like is."""
    return member_minor(t) if is_member_minor(like) else t.contiguous()


def is_member_minor(t: torch.Tensor) -> bool:
    """Whether stacked (K, in, out) weights are stored member-minor ((in, K, out) in memory, see member_minor)."""
    return t.dim() == 3 and t.stride(0) < t.stride(1)


def _in_memory_order(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """t (K, ...) as a contiguous view in memory order, and the shape that broadcasts a (K,) vector over that view:
    a member-minor (in, K, out) layout is walked as stored (elementwise ops on its permuted view run 2-4x slower)."""
    if is_member_minor(t) and t.transpose(0, 1).is_contiguous():
        return t.transpose(0, 1), (1, -1, 1)
    return t.contiguous(), (-1, *([1] * (t.dim() - 1)))


class _WeightedTermSums(torch.autograd.Function):
    """strengths[k] * sum(term(w[k])) for stacked w (K, ...); member k's gradient is grad[k] * strengths[k] *
    term_grad(w[k]), in w's layout. Both walk w in memory order (see _in_memory_order)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, strengths: torch.Tensor, term: Callable, term_grad: Callable) -> torch.Tensor:
        ctx.save_for_backward(w, strengths)
        ctx.term_grad = term_grad
        t, shape = _in_memory_order(w)
        values = term(t)
        sums = values.sum(0).view(len(strengths), -1).sum(1) if shape[0] == 1 else values.flatten(1).sum(1)
        return strengths * sums

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        w, strengths = ctx.saved_tensors
        t, shape = _in_memory_order(w)
        g = ctx.term_grad(t) * (grad * strengths).view(shape)  # not in place: term_grad may return t
        return (g.transpose(0, 1) if shape[0] == 1 else g), None, None, None


def weighted_term_sums(w: torch.Tensor, strengths: torch.Tensor, term: Callable, term_grad: Callable
                       ) -> torch.Tensor:
    """(K,) strengths[k] * sum(term(w[k])) of stacked weights, differentiable in w (a population's per-member
    penalty: term and term_grad are an elementwise function and its derivative)."""
    return _WeightedTermSums.apply(w, strengths, term, term_grad)


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
        # the first layer member-minor (see _GroupedBag), the others member-major for batched matmuls
        self.weights = nn.ParameterList(
            [nn.Parameter((member_minor if i == 0 else torch.Tensor.contiguous)(
                torch.stack([m[i].weight.detach().t() for m in linears])))
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
                params[i] = nn.Parameter(same_layout(params[i].detach().index_select(0, idx), params[i]))

    def first_layer(self, xs: Any, width: int) -> torch.Tensor:
        """(K, width, hidden): member k's batch xs[k] (its rows padded with zero inputs to `width` rows) times its
        first weight matrix, plus its bias; xs may be GroupedRows already."""
        W, b = self.weights[0], self.biases[0]
        K, n_in = W.shape[0], W.shape[1]
        if isinstance(xs, GroupedRows) or isinstance(xs[0], MultiHot):
            rows = xs if isinstance(xs, GroupedRows) else group_multihot(xs, width)
            rows = GroupedRows(rows.spans, [c.to(W.device) for c in rows.crows], [c.to(W.device) for c in rows.cols])
            return _GroupedBag.apply(W, rows) + b.unsqueeze(1)
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


__all__ = ["StackedMLP", "MemberView", "MemberLinear", "GroupedRows", "group_multihot", "padded_crow", "member_minor",
           "same_layout"]
