"""``Pairs``: the architecture input of stage-two re-ranking, factored instead of materialised.

Re-ranking scores every user against its ``n`` candidates: ``x = [user, item, user * item]``
(B * n, 3D). Whatever reads ``x`` first is a Linear layer (the first layer of an expert, a gate,
a bottom or a tower), and a Linear over a concatenation splits into one matrix per part:

    W x + b = (W_u user + b) + W_i item + W_x (user * item)

The user part is computed once per user instead of once per pair, and the item part once per
catalogue item (cached across requests), so per pair only ``W_x (user * item)`` is left: a third
of the multiply-adds of the first layer, which dominates stage two. Equal to the plain path up to
float rounding (a test checks every architecture).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ItemSideCache:
    """What re-ranking can compute once per item table: ``W_i item`` of every catalogue item for
    every Linear that reads the pair input, and those Linears' weights split and stacked, so all of
    them are one matrix product per batch. The layers are learnt on first use (a model's forward
    reads them in a fixed order); a new one re-stacks."""

    def __init__(self, item_vectors: Tensor) -> None:
        self.item_vectors = item_vectors  # (I, D)
        self.layers: list[nn.Linear] = []
        self.slices: dict[int, slice] = {}  # id(layer) -> its columns in the stacked outputs
        self._stacked: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def add(self, layer: nn.Linear) -> None:
        start = sum(known.out_features for known in self.layers)
        self.layers.append(layer)
        self.slices[id(layer)] = slice(start, start + layer.out_features)
        self._stacked = None

    def stacked(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(W_user, W_cross, bias) of every layer stacked by output, and the item part of every
        catalogue item, (I, total)."""
        if self._stacked is None:
            d = self.item_vectors.shape[1]
            w = torch.cat([layer.weight for layer in self.layers])  # (total, 3D)
            bias = torch.cat(
                [
                    layer.bias if layer.bias is not None else w.new_zeros(layer.out_features)
                    for layer in self.layers
                ]
            )
            item = self.item_vectors @ w[:, d : 2 * d].T  # (I, total)
            self._stacked = (w[:, :d].T.contiguous(), w[:, 2 * d :].T.contiguous(), bias, item)
        return self._stacked


class Pairs:
    """Users (B, D) against their candidates (B, n) (catalogue indices, >= 0)."""

    def __init__(self, user: Tensor, candidates: Tensor, cache: ItemSideCache) -> None:
        self.user = user  # (B, D)
        self.candidates = candidates  # (B, n)
        self.cache = cache
        self._out: Tensor | None = None  # (B * n, total): every known layer's output

    @property
    def shape(self) -> tuple[int, int]:
        b, n = self.candidates.shape
        return b, n

    def items(self) -> Tensor:
        return F.embedding(self.candidates, self.cache.item_vectors)  # (B, n, D)

    def dense(self) -> Tensor:
        """The materialised input ``[user, item, user * item]``, (B * n, 3D)."""
        b, n = self.shape
        item = self.items()
        user = self.user[:, None, :].expand_as(item)
        return torch.cat([user, item, user * item], dim=-1).reshape(b * n, -1)

    def linear(self, layer: nn.Linear) -> Tensor:
        """``layer(self.dense())`` without materialising it, (B * n, out)."""
        d = self.user.shape[1]
        if layer.in_features != 3 * d:
            raise ValueError(f"a Linear over pairs needs in_features {3 * d}, got {layer}")
        if id(layer) not in self.cache.slices:
            self.cache.add(layer)
            self._out = None
        if self._out is None:
            w_user, w_cross, bias, item = self.cache.stacked()
            b, n = self.shape
            cross = (self.items() * self.user[:, None, :]) @ w_cross  # (B, n, total)
            cross += F.embedding(self.candidates, item)
            cross += (self.user @ w_user + bias)[:, None, :]
            self._out = cross.reshape(b * n, -1)
        return self._out[:, self.cache.slices[id(layer)]]


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
