"""``Pairs``: the architecture input of stage-two re-ranking, factored instead of materialised.

Re-ranking scores every user against its ``n`` candidates: ``x = [user, item, user * item]``
(B * n, 3D). Whatever reads ``x`` first is a Linear layer (the first layer of an expert, a gate,
a bottom or a tower), and a Linear over a concatenation splits into one matrix per part, which
regroup into one matrix per user:

    W x + b = (W_u user + b) + W_i item + W_x (user * item)
            = (W_u user + b) + (W_i + W_x diag(user)) item

so each user's candidates go through one product with their own (D + 1, out) matrix (the
constant part rides on an extra input fixed at 1): no (B * n, 3D) input, no per-pair gather of a
cached item part and no extra passes over the (B * n, out) output, whose memory traffic is what
stage two spends its time on. Linears read together (all experts, all gates) are stacked into
one product (``Pairs.linears``). Equal to the plain path up to float rounding (a test checks
every architecture).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# the factored product's output width is rounded up to a multiple of this many float32 columns
# (one 64-byte line, one AVX-512 register): a width like MMoE's 4 x 128 + 2 x 4 + 1 = 521 leaves
# every row of the output misaligned and a ragged tail for the matrix kernel. On one core of this
# project's Xeon, bmm (8, 200, 65) @ (8, 65, 521) took 1.65 ms against 1.15 ms padded to 528.
PAD = 16


class ItemSideCache:
    """What re-ranking keeps across calls for one item table: for each group of Linears read
    together, their weights split by part (user, item, cross) and stacked by output."""

    def __init__(self, item_vectors: Tensor) -> None:
        self.item_vectors = item_vectors  # (I, D)
        # id of each layer in the group -> (the layers, kept so the ids stay theirs; the parts)
        self._stacked: dict[
            tuple[int, ...], tuple[Sequence[nn.Linear], Tensor, Tensor, Tensor | None]
        ] = {}
        self._parts: dict[tuple[int, int], ItemSideCache] = {}
        self._with_one: Tensor | None = None

    def with_one(self) -> Tensor:
        """The item vectors with a constant 1 appended, (I, D + 1): one gather gives the factored
        product's input, bias channel included."""
        if self._with_one is None:
            v = self.item_vectors
            self._with_one = torch.cat([v, v.new_ones(len(v), 1)], dim=1).contiguous()
        return self._with_one

    def part(self, k: int, width: int) -> ItemSideCache:
        """The cache of channels ``k width : (k + 1) width`` of the item vectors (an ensemble
        member's), kept with this one."""
        if (k, width) not in self._parts:
            part = self.item_vectors[:, k * width : (k + 1) * width].contiguous()  # (I, W)
            self._parts[k, width] = ItemSideCache(part)
        return self._parts[k, width]

    def stacked(self, layers: Sequence[nn.Linear]) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(W_user; bias)`` (D + 1, total), ``W_item`` and ``W_cross`` (D, total) of the layers,
        stacked by output in their order; ``W_cross`` is None for a ``[user, item]`` input."""
        key = tuple(id(layer) for layer in layers)
        if key not in self._stacked:
            d = self.item_vectors.shape[1]
            weight, bias = stacked_weights(layers)
            w = weight.T  # (3D, total)
            user = torch.cat([w[:d], bias[None, :]])  # the bias rides on a constant 1
            self._stacked[key] = (
                list(layers),
                user.contiguous(),
                w[d : 2 * d].contiguous(),
                w[2 * d :].contiguous() if len(w) > 2 * d else None,
            )
        return self._stacked[key][1:]  # type: ignore[return-value]


class Pairs:
    """Users (B, D) against their candidates (B, n) (catalogue indices, >= 0). ``cross``: the
    pair input is ``[user, item, user * item]`` (the default), else ``[user, item]``
    (``model.pair_input``)."""

    def __init__(
        self,
        user: Tensor,
        candidates: Tensor,
        cache: ItemSideCache,
        cross: bool = True,
        dots: bool = False,
    ) -> None:
        self.user = user  # (B, D)
        self.candidates = candidates  # (B, n)
        self.cache = cache
        self.cross = cross
        self._items: Tensor | None = None  # (B, n, D + 1): the candidates' vectors and a 1
        # with ``dots``, the first factored product carries one more column, u . i (``dots()``)
        self._dots: Tensor | None = None
        self._want_dots = dots

    @property
    def shape(self) -> tuple[int, int]:
        b, n = self.candidates.shape
        return b, n

    def items(self) -> Tensor:
        return F.embedding(self.candidates, self.cache.item_vectors)  # (B, n, D)

    def dense(self) -> Tensor:
        """The materialised input ``[user, item, user * item]`` (B * n, 3D), or ``[user, item]``
        (B * n, 2D) without ``cross``."""
        b, n = self.shape
        item = self.items()
        user = self.user[:, None, :].expand_as(item)
        parts = [user, item, user * item] if self.cross else [user, item]
        return torch.cat(parts, dim=-1).reshape(b * n, -1)

    def linear(self, layer: nn.Linear) -> Tensor:
        """``layer(self.dense())`` without materialising it, (B * n, out)."""
        return self.linears([layer])

    @torch.no_grad()
    def linears(self, layers: Sequence[nn.Linear]) -> Tensor:
        """``torch.cat([layer(self.dense()) for layer in layers], dim=1)`` as one product, a new
        (B * n, total) tensor the caller owns (inference only: no gradient flows through it)."""
        d = self.user.shape[1]
        width = (3 if self.cross else 2) * d
        for layer in layers:
            if layer.in_features != width:
                raise ValueError(f"a Linear over pairs needs in_features {width}, got {layer}")
        w_user, w_item, w_cross = self.cache.stacked(layers)
        b, n = self.shape
        total = w_item.shape[1]
        dots = self._want_dots and self._dots is None  # this product also gives u . i
        # (B, D + 1, padded), written in place: rows W_i + diag(u) W_x (or W_i alone for
        # [user, item]), then the constant row W_u u + b; with ``dots`` one more column, (u; 0);
        # zeros up to a multiple of PAD columns
        padded = -(-(total + dots) // PAD) * PAD
        per_user = self.user.new_empty(b, d + 1, padded)
        if w_cross is None:
            per_user[:, :d, :total] = w_item
        else:
            torch.addcmul(w_item, self.user[:, :, None], w_cross, out=per_user[:, :d, :total])
        torch.addmm(w_user[d], self.user, w_user[:d], out=per_user[:, d, :total])
        if dots:
            per_user[:, :d, total] = self.user
            per_user[:, d, total] = 0.0
        per_user[:, :, total + dots :] = 0.0
        out = torch.bmm(self.items_with_one(), per_user).reshape(b * n, padded)
        if dots:
            self._dots = out[:, total]
        return out[:, :total]  # rows PAD-aligned: a view, not a copy

    def items_with_one(self) -> Tensor:
        """The candidates' vectors with a constant 1 appended (B, n, D + 1), gathered once."""
        if self._items is None:
            self._items = F.embedding(self.candidates, self.cache.with_one())
        return self._items

    @torch.no_grad()
    def dots(self) -> Tensor:
        """``u . i`` of every pair (B * n,): the retrieval score. With ``dots=True`` it came out
        of the first factored product as one more column (no pass of its own over the pairs);
        otherwise it is computed here, one product per user."""
        if self._dots is None:
            b, n = self.shape
            user = torch.cat([self.user, self.user.new_zeros(b, 1)], dim=1)  # (B, D + 1)
            self._dots = torch.bmm(self.items_with_one(), user[:, :, None]).reshape(b * n)
        return self._dots


def stacked_weights(layers: Sequence[nn.Linear]) -> tuple[Tensor, Tensor]:
    """The layers' weights (total, in) and biases (total,) stacked by output in their order (a
    layer without a bias adds zeros)."""
    weight = torch.cat([layer.weight for layer in layers])
    bias = torch.cat(
        [
            layer.bias if layer.bias is not None else weight.new_zeros(layer.out_features)
            for layer in layers
        ]
    )
    return weight, bias


def linears(layers: Sequence[nn.Linear], x: Tensor | Pairs) -> Tensor:
    """``torch.cat([layer(x) for layer in layers], dim=1)`` as one product (B, total), for a
    plain input or for ``Pairs``.

    One (in, total) product instead of one per layer: for MMoE's 4 experts and 2 gates at
    B = 512 a training step's matrix products run 6 -> 1 forward and 12 -> 2 backward, and the
    activations are one block (no ``torch.stack`` copy).
    """
    if isinstance(x, Pairs):
        return x.linears(layers)
    return F.linear(x, *stacked_weights(layers))


def first(module: nn.Module, x: Tensor | Pairs) -> Tensor:
    """``module(x)`` where ``module`` is a Linear or a Sequential that starts with one (an
    ``mlp``), for a plain input or for ``Pairs``."""
    if isinstance(x, Tensor):
        return module(x)  # type: ignore[no-any-return]
    if isinstance(module, nn.Linear):
        return x.linear(module)
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], nn.Linear):
        return module[1:](x.linear(module[0]))  # type: ignore[no-any-return]
    return module(x.dense())  # type: ignore[no-any-return]


def dense(x: Tensor | Pairs) -> Tensor:
    return x if isinstance(x, Tensor) else x.dense()
