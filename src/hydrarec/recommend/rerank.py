"""Stage two's fast path: a trained model's predictions for each user's candidates, computed
from outside the model, equal to its plain forward up to float rounding (a contract test checks
every architecture in the registry).

Re-ranking scores every user against its ``n`` candidates: ``x = [user, item, user * item]``
(B * n, 3D). Whatever reads ``x`` first is a Linear layer (the first layer of an expert, a gate,
a bottom or a tower), and a Linear over a concatenation splits into one matrix per part, which
regroup into one matrix per user:

    W x + b = (W_u user + b) + W_i item + W_x (user * item)
            = (W_u user + b) + (W_i + W_x diag(user)) item

so each user's candidates go through one product with their own (D + 1, out) matrix (the
constant part rides on an extra input fixed at 1): no (B * n, 3D) input, no per-pair gather of a
cached item part and no extra passes over the (B * n, out) output, whose memory traffic is what
stage two spends its time on. Linears read together (all experts and gates) are stacked into one
product (``Pairs.linears``). Each architecture's fast forward (``FAST_FORWARDS``) routes its
input layers through ``Pairs`` and runs the rest of it as is; an architecture without one is
scored over the materialised pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hydrarec.architectures import AITM, PLE, Architecture, MMoE, SharedBottom, SingleTask
from hydrarec.architectures.layers import Experts
from hydrarec.architectures.ple import ExtractionLevel
from hydrarec.model.ensemble import Ensemble, Model
from hydrarec.model.multitask import MultiTaskRecommender

# the factored product's output width is rounded up to a multiple of this many float32 columns
# (one 64-byte line): a width like MMoE's 4 x 128 + 2 x 4 + 1 = 521 would leave every row of the
# output misaligned and a ragged tail for the matrix kernel, which runs measurably slower
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
        self._members: dict[tuple[int, int], ItemSideCache] = {}
        self._with_one: Tensor | None = None

    def with_one(self) -> Tensor:
        """The item vectors with a constant 1 appended, (I, D + 1): one gather gives the factored
        product's input, bias channel included."""
        if self._with_one is None:
            v = self.item_vectors
            self._with_one = torch.cat([v, v.new_ones(len(v), 1)], dim=1).contiguous()
        return self._with_one

    def member_channels(self, k: int, member_dim: int) -> ItemSideCache:
        """The cache of channels ``k W : (k + 1) W`` of the item vectors (ensemble member k's,
        ``W = member_dim``), kept with this one."""
        if (k, member_dim) not in self._members:
            own = self.item_vectors[:, k * member_dim : (k + 1) * member_dim]  # (I, W)
            self._members[k, member_dim] = ItemSideCache(own.contiguous())
        return self._members[k, member_dim]

    def stacked(self, layers: Sequence[nn.Linear]) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(W_user; bias)`` (D + 1, total), ``W_item`` and ``W_cross`` (D, total) of the layers,
        stacked by output in their order; ``W_cross`` is None for a ``[user, item]`` input."""
        key = tuple(id(layer) for layer in layers)
        if key not in self._stacked:
            d = self.item_vectors.shape[1]
            w = torch.cat([layer.weight for layer in layers]).T  # (3D, total)
            biases: list[Tensor] = [  # a layer without a bias adds zeros
                layer.bias if layer.bias is not None else w.new_zeros(layer.out_features)
                for layer in layers
            ]
            bias = torch.cat(biases)  # (total,)
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
    (``model.pair_input``). With ``dots``, the first factored product carries one more column,
    ``u . i`` (``dots()``)."""

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
        self._dots: Tensor | None = None  # (B * n,)
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
        blocks = [user, item, user * item] if self.cross else [user, item]
        return torch.cat(blocks, dim=-1).reshape(b * n, -1)

    def linear(self, layer: nn.Linear) -> Tensor:
        """``layer(self.dense())`` without materialising it, (B * n, out)."""
        return self.linears([layer])

    @torch.inference_mode()
    def linears(self, layers: Sequence[nn.Linear]) -> Tensor:
        """``torch.cat([layer(self.dense()) for layer in layers], dim=1)`` as one product, a new
        (B * n, total) tensor the caller owns (inference only: no gradient flows through it)."""
        d = self.user.shape[1]
        pair_width = (3 if self.cross else 2) * d
        for layer in layers:
            if layer.in_features != pair_width:
                raise ValueError(f"a Linear over pairs needs in_features {pair_width}, got {layer}")
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

    @torch.inference_mode()
    def dots(self) -> Tensor:
        """``u . i`` of every pair (B * n,): the retrieval score. With ``dots=True`` it came out
        of the first factored product as one more column (no pass of its own over the pairs);
        otherwise it is computed here, one product per user."""
        if self._dots is None:
            b, n = self.shape
            user = torch.cat([self.user, self.user.new_zeros(b, 1)], dim=1)  # (B, D + 1)
            self._dots = torch.bmm(self.items_with_one(), user[:, :, None]).reshape(b * n)
        return self._dots


# -- the architectures, their input layers factored ---------------------------------------------
def through(module: nn.Module, pairs: Pairs) -> Tensor:
    """``module(pairs.dense())`` where ``module`` is a Linear or a Sequential that starts with
    one (an ``mlp``): that Linear factored. Anything else reads the materialised pairs."""
    if isinstance(module, nn.Linear):
        return pairs.linear(module)
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], nn.Linear):
        return module[1:](pairs.linear(module[0]))  # type: ignore[no-any-return]
    return module(pairs.dense())  # type: ignore[no-any-return]


def one_layer_firsts(experts: Experts) -> list[nn.Linear] | None:
    """Each expert's Linear when every expert is one layer (Linear, ReLU, Dropout), else None."""
    mlps = cast(list[nn.Sequential], list(experts.experts))
    if all(len(e) == 3 and isinstance(e[0], nn.Linear) and isinstance(e[1], nn.ReLU) for e in mlps):
        return [cast(nn.Linear, e[0]) for e in mlps]
    return None


def experts_through(experts: Experts, pairs: Pairs) -> Tensor:
    """``experts(pairs.dense())`` (B * n, E, H); one-layer experts in one product, ReLU in place."""
    firsts = one_layer_firsts(experts)
    if firsts is None:
        return torch.stack([through(e, pairs) for e in experts.experts], dim=1)
    return pairs.linears(firsts).relu_().unflatten(1, (len(firsts), -1))  # a view


def mix_tasks(logits: Tensor, experts: Tensor) -> Tensor:
    """Every task's softmax-gated mix at once: logits (B, T, E), experts (B, E, H) -> (B, T, H).

    The softmax is written out, in place, over a (T, E, B) copy: each step is a pass over rows
    of B pairs rather than over B rows of a few experts, faster than ``torch.softmax`` here.
    """
    b, t, e = logits.shape
    weights = logits.reshape(b, t * e).T.contiguous().view(t, e, b)
    weights = (weights - weights.amax(dim=1, keepdim=True)).exp_()
    weights.div_(weights.sum(dim=1, keepdim=True))
    return torch.bmm(weights.permute(2, 0, 1).contiguous(), experts)


def single_task(arch: SingleTask, pairs: Pairs) -> list[Tensor]:
    return [through(tower, pairs) for tower in arch.towers]


def shared_bottom(arch: SharedBottom, pairs: Pairs) -> list[Tensor]:
    shared = through(arch.bottom, pairs)  # (B n, H)
    return [tower(shared) for tower in arch.towers]


def mmoe(arch: MMoE, pairs: Pairs) -> list[Tensor]:
    """One-layer experts and the gates read the pairs in ONE product (B n, E H + T E)."""
    if not arch.towers:
        return []
    gates = cast(list[nn.Linear], list(arch.gates))
    firsts = one_layer_firsts(arch.experts)
    if firsts is None:
        experts = experts_through(arch.experts, pairs)  # (B n, E, H)
        logits = pairs.linears(gates).unflatten(1, (len(gates), -1))  # (B n, T, E)
    else:
        block = pairs.linears(firsts + gates)
        eh = sum(layer.out_features for layer in firsts)
        experts = block[:, :eh].relu_().unflatten(1, (len(firsts), -1))  # a view
        logits = block[:, eh:].unflatten(1, (len(gates), -1))
    mixed = mix_tasks(logits, experts)  # (B n, T, H)
    return [tower(mixed[:, t]) for t, tower in enumerate(arch.towers)]


def ple(arch: PLE, pairs: Pairs) -> list[Tensor]:
    """Level 1's experts and gates read the pairs; the later levels and the towers run as is."""
    if not arch.towers:
        return []
    first = cast(ExtractionLevel, arch.levels[0])
    shared_gate = first.shared_gate
    task_x, shared_x = first.combine(
        [experts_through(cast(Experts, own), pairs) for own in first.own],
        experts_through(first.shared, pairs),
        [pairs.linear(cast(nn.Linear, gate)) for gate in first.task_gates],
        None if shared_gate is None else pairs.linear(shared_gate),
    )
    for level in arch.levels[1:]:
        task_x, shared_x = level(task_x, shared_x)
    return [tower(h) for tower, h in zip(arch.towers, task_x, strict=True)]


def aitm(arch: AITM, pairs: Pairs) -> list[Tensor]:
    return arch.funnel([through(tower, pairs) for tower in arch.towers])


# an architecture's forward over Pairs; one missing here is scored over the materialised pairs
FAST_FORWARDS: dict[type[Architecture], Callable[[Any, Pairs], list[Tensor]]] = {
    SingleTask: single_task,
    SharedBottom: shared_bottom,
    MMoE: mmoe,
    PLE: ple,
    AITM: aitm,
}


@torch.inference_mode()
def architecture_over(arch: Architecture, pairs: Pairs) -> list[Tensor]:
    """``arch(pairs.dense())``, through the architecture's fast forward when it has one."""
    fast = FAST_FORWARDS.get(type(arch))
    return arch(pairs.dense()) if fast is None else fast(arch, pairs)  # type: ignore[no-any-return]


# -- the model's predictions ----------------------------------------------------------------------
@torch.inference_mode()
def predict_candidates(
    model: Model, user: Tensor, candidates: Tensor, cache: ItemSideCache
) -> dict[str, Tensor]:
    """``model.predict_pairs`` of each user (B, D) against its candidates (B, n) (indices into
    ``cache.item_vectors``), flattened to (B * n,). An ensemble scores each member on its
    channels and combines them."""
    if not isinstance(model, Ensemble):
        return member_candidates(model, user, candidates, cache)
    w = model.member_dim
    members = cast(list[MultiTaskRecommender], list(model.members))
    outs = [
        member_candidates(member, own_user, candidates, cache.member_channels(k, w))
        for k, (member, own_user) in enumerate(zip(members, user.split(w, dim=-1), strict=True))
    ]
    return model.combine(outs)


def member_candidates(
    model: MultiTaskRecommender, user: Tensor, candidates: Tensor, cache: ItemSideCache
) -> dict[str, Tensor]:
    """One model's ``predict_candidates``: the architecture's input layers factored, one product
    per user, their stacked weights cached across calls. The retrieval score comes out of the
    first product as one more column, and the pair vectors (B * n, D) are materialised only for
    a task that reads them (``reads_vectors``; the others get empty ones). With a side block
    the pairs are scored plainly (the factoring reads whole vectors)."""
    b, n = candidates.shape
    pairs = Pairs(user, candidates, cache, cross=model.cross, dots=True)
    if model.side_dim or any(task.reads_vectors for _, task in model.task_items()):
        item = pairs.items().reshape(b * n, -1)
        flat_user = user[:, None, :].expand(b, n, user.shape[1]).reshape(b * n, -1)
    else:
        item = flat_user = user.new_empty(0, user.shape[1])
    if model.side_dim:
        return model.predict_pairs(flat_user, item)
    reps: dict[str, Tensor] = {}
    if model.tower_tasks:
        arch = cast(Architecture, model.architecture)
        reps = dict(zip(model.tower_tasks, architecture_over(arch, pairs), strict=True))
    return model.predict_pairs(flat_user, item, reps, pairs.dots())
