"""I-AutoRec as a block of the two towers (issue 8).

Sedhain, Menon, Sanner & Xie, "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015.
I-AutoRec reconstructs an item's ratings over all users, r_i (observed entries only):

    h_i   = sigmoid(V r_i + c)          (K,)   V: (K, n_users), unobserved entries of r_i are 0
    r_ui  = W_u . h_i + b_u             ()     row u of the decoder (W, b)

That is a dot product of an ITEM vector computed from the item's ratings and a USER vector, so it
fits the towers as one more block at the end of each vector:

    item block = [h_i, 1]   (K + 1)   ``ItemAutoRec``: an EmbeddingBag over the users who rated the
                                      item in train, weighted by their ratings, then the sigmoid
    user block = [W_u, b_u] (K + 1)   ``UserAutoRec``: the user id's decoder row and bias

and dot(user block, item block) = W_u . h_i + b_u. The rating task adds that dot product to its
own head (``MultiTaskRecommender(side_dim=K + 1)`` hands the blocks to the tasks apart from the
rest of the vectors, which the multi-task architecture reads): the MF-style head and the
autoencoder are two paths summed, trained together.

The bags are the TRAIN ratings (``ItemRatings``), kept as buffers so that a run's weights hold
them (loading a run needs no data). In the paper an item's input includes the very ratings its
output is trained on, and only the bottleneck and the L2 keep it from copying them. Here, in
training, each item's bag leaves out the ratings of the batch's own (user, item) pairs
(``leave_out``): the block never sees a rating it is trained to predict, which is the situation
at evaluation, where held-out ratings are never in the bags (on ML100K-U1 validation this beat
the paper's way and input dropout alike; benchmarks/results/ML100K-U1.md). Also available: input
dropout, a share of every bag's ratings dropped per training forward (inverted dropout, the
denoising of Vincent et al. 2008). An item with no ratings left in its bag (unseen in train,
added later, or all left out) gets the zero block: the autoencoder path then adds nothing and the
prediction is the head's alone.

The paper's L2, ``l2 * (||V||^2 + ||W||^2)`` in the loss, is added as its gradient ``2 l2 V`` in
the backward of the forward that reads the weight (``with_l2``), so the trainer sees ordinary
parameters and knows nothing of it. It is not AdamW's decoupled weight decay, on purpose: Adam
divides this gradient, like the data's, by each entry's gradient scale, so the rows of rarely
seen users are held much closer to zero; decoupled decay shrinks every row alike and let W
memorise the train ratings (ML100K-U1: train MSE 0.08 and a worse validation RMSE,
benchmarks/results/ML100K-U1.md). The train loss that is logged leaves the penalty out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydrarec.config import AutoRecConfig
from hydrarec.errors import DataError
from hydrarec.features.batch import EntityFeatures


def block_group(block: nn.Module, lr: float | None) -> list[dict[str, Any]]:
    """The optimizer settings of a block's parameters: no AdamW weight decay (the L2 is in the
    gradient), and ``model.autorec.lr`` when set: the two paths of the rating task learn at their
    own pace (the head overfits in a few epochs, the autoencoder needs many)."""
    group: dict[str, Any] = {"name": "autorec", "params": list(block.parameters())}
    return [group | {"weight_decay": 0.0} | ({"lr": lr} if lr is not None else {})]


class _L2(torch.autograd.Function):
    """Identity forward; the backward adds ``2 l2 weight``, the gradient of ``l2 ||weight||^2``."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, l2: float) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.l2 = l2
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (weight,) = ctx.saved_tensors
        return grad + 2.0 * ctx.l2 * weight, None


def with_l2(weight: Tensor, l2: float) -> Tensor:
    """``weight`` as it is, with an L2 term of the loss in its gradient (see the module doc).

    The weight must be read once per forward through this, as a whole table (dense gradient).
    """
    if l2 > 0 and torch.is_grad_enabled() and weight.requires_grad:
        return _L2.apply(weight, l2)  # type: ignore[no-any-return]
    return weight


@dataclass(frozen=True)
class ItemRatings:
    """Each item's train ratings, by id-vocabulary index, in CSR form.

    indptr: (n_items + 1,) the ratings of item j are entries indptr[j]:indptr[j+1];
    users: (nnz,) user id-vocabulary index of each rating; ratings: (nnz,) float32 values.
    """

    indptr: Tensor
    users: Tensor
    ratings: Tensor

    @classmethod
    def from_pairs(
        cls, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_items: int
    ) -> ItemRatings:
        """From parallel arrays of (user id index, item id index, rating) of the train rows.

        >>> r = ItemRatings.from_pairs(np.array([3, 2, 2]), np.array([2, 4, 2]),
        ...                            np.array([5.0, 1.0, 4.0]), n_items=5)
        >>> r.indptr.tolist(), r.users.tolist(), r.ratings.tolist()
        ([0, 0, 0, 2, 2, 3], [2, 3, 2], [4.0, 5.0, 1.0])
        """
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        ratings = np.asarray(ratings, np.float32)
        if not (len(users) == len(items) == len(ratings)):
            raise DataError("ItemRatings: users, items and ratings differ in length")
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise DataError(f"ItemRatings: item index outside 0..{n_items - 1}")
        if not np.isfinite(ratings).all():
            raise DataError("ItemRatings: ratings must be finite (a NaN label slipped through)")
        order = np.lexsort((users, items))  # by item, then user: a deterministic layout
        indptr = np.zeros(n_items + 1, np.int64)
        np.cumsum(np.bincount(items, minlength=n_items), out=indptr[1:])
        return cls(
            torch.from_numpy(indptr),
            torch.from_numpy(users[order]),
            torch.from_numpy(ratings[order]),
        )


class ItemAutoRec(nn.Module):
    """Item id indices (N,) -> the AutoRec item block [h_i, 1] (N, K + 1); zeros for empty bags."""

    indptr: Tensor  # buffers: the bags (``ItemRatings``)
    users: Tensor
    ratings: Tensor

    def __init__(
        self, n_items: int, n_users: int, cfg: AutoRecConfig, ratings: ItemRatings | None = None
    ) -> None:
        super().__init__()
        self.hidden = cfg.hidden
        self.out_dim = cfg.hidden + 1
        self.input_dropout = cfg.input_dropout
        self.leave_out = cfg.leave_out
        self.l2 = cfg.l2
        self.lr = cfg.lr
        # row u of ``encoder`` is column u of V, with nn.Linear's init of a (K, n_users) weight;
        # a plain parameter, so no embedding-table machinery (sparse updates) applies to it
        bound = 1.0 / n_users**0.5
        self.encoder = nn.Parameter(torch.empty(n_users, cfg.hidden).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(cfg.hidden))  # c
        # persistent buffers: the run's weights carry the bags; their sizes follow the state dict
        empty = ItemRatings.from_pairs(np.zeros(0), np.zeros(0), np.zeros(0), n_items)
        bags = ratings if ratings is not None else empty
        if bags.indptr.shape[0] != n_items + 1:
            raise DataError(
                f"ItemAutoRec: ratings of {bags.indptr.shape[0] - 1} items, not {n_items}"
            )
        if len(bags.users) and int(bags.users.max()) >= n_users:
            raise DataError(f"ItemAutoRec: a rating's user index is outside 0..{n_users - 1}")
        self.register_buffer("indptr", bags.indptr.clone())
        self.register_buffer("users", bags.users.clone())
        self.register_buffer("ratings", bags.ratings.clone())

    def forward(
        self, feats: EntityFeatures, leave_out: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """``leave_out``: (user id indices (P,), rows of ``feats`` (P,)): pairs whose rating is
        taken out of the bag of that row's item (the batch's own pairs, in training)."""
        rows, entries, offsets = self._entries(feats.ids)  # (n,), (n,), (N,)
        users, weights = self.users[entries], self.ratings[entries]  # (n,) each
        keep = torch.ones_like(rows, dtype=torch.bool)  # (n,)
        if leave_out is not None and self.leave_out:
            n_users = self.encoder.shape[0]
            pairs = leave_out[1] * n_users + leave_out[0]  # (P,) one key per (row, user)
            keep &= ~torch.isin(rows * n_users + users, pairs)
        if self.training and self.input_dropout > 0:  # inverted dropout of bag entries
            keep &= torch.rand(keep.shape, device=keep.device) >= self.input_dropout
            weights = weights / (1.0 - self.input_dropout)
        v = with_l2(self.encoder, self.l2)  # (n_users, K)
        pre = F.embedding_bag(users, v, offsets, mode="sum", per_sample_weights=weights * keep)
        h = torch.sigmoid(pre + self.bias)  # (N, K)
        block = torch.cat([h, torch.ones_like(h[:, :1])], dim=-1)  # (N, K + 1)
        kept = torch.zeros(len(offsets), device=h.device).index_add_(0, rows, keep.to(h.dtype))
        return block * (kept > 0).unsqueeze(-1).to(h.dtype)  # (N, K + 1); empty bag -> zeros

    def _entries(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The bags of item ids (N,) laid end to end: each entry's row (n,), its index in the
        buffers (n,), and where each row's bag starts (N,). Padding, out-of-vocabulary and ids
        past the table have empty bags."""
        inside = ids.clamp(max=self.indptr.shape[0] - 2)  # (N,)
        starts = self.indptr[inside]  # (N,)
        counts = torch.where(ids == inside, self.indptr[inside + 1] - starts, 0)  # (N,)
        offsets = torch.cumsum(counts, 0) - counts  # (N,)
        rows = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), counts)  # (n,)
        entries = starts[rows] + torch.arange(len(rows), device=ids.device) - offsets[rows]
        return rows, entries, offsets

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # the bags' length is the data's, not the config's: take it from the saved tensors
        for name in ("users", "ratings"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=self.indptr.device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def param_groups(self) -> list[dict[str, Any]]:
        """No AdamW weight decay: V has its L2 (``with_l2``), the bias c none."""
        return block_group(self, self.lr)


class UserAutoRec(nn.Module):
    """User id indices (B,) -> the AutoRec user block [W_u, b_u] (B, K + 1).

    The out-of-vocabulary row (users unseen in train) and the padding row stay zero in practice
    (no train rating reaches them), so a cold user's autoencoder path adds nothing.
    """

    def __init__(self, n_users: int, cfg: AutoRecConfig) -> None:
        super().__init__()
        self.out_dim = cfg.hidden + 1
        self.l2 = cfg.l2
        self.lr = cfg.lr
        # W, one (K,) row per user, with nn.Linear's init of W; plain parameters, as in ItemAutoRec
        bound = 1.0 / cfg.hidden**0.5
        self.decoder = nn.Parameter(torch.empty(n_users, cfg.hidden).uniform_(-bound, bound))
        with torch.no_grad():
            self.decoder[:2].zero_()  # padding and out of vocabulary
        # b_u starts at 0: the rating head's bias already holds the global mean
        self.user_bias = nn.Parameter(torch.zeros(n_users, 1))

    def forward(self, feats: EntityFeatures) -> Tensor:
        w = F.embedding(feats.ids, with_l2(self.decoder, self.l2))  # (B, K)
        return torch.cat([w, F.embedding(feats.ids, self.user_bias)], dim=-1)  # (B, K + 1)

    def param_groups(self) -> list[dict[str, Any]]:
        """No AdamW weight decay: W has its L2 (``with_l2``), the biases b_u none."""
        return block_group(self, self.lr)


class WithBlock(nn.Module):
    """A tower whose vectors get a block appended: ``[tower(feats, ...) (D), block(feats) (S)]``.

    The tower is unchanged (its state lives under ``tower.``); the block reads the same features.
    ``strip``: a user tower's history holds ITEM vectors, which carry the item block at their end;
    the tower reads them without its last ``strip`` channels, as it was built to.
    """

    def __init__(self, tower: nn.Module, block: nn.Module, strip: int = 0) -> None:
        super().__init__()
        self.tower = tower
        self.block = block
        self.strip = strip
        self.out_dim = int(getattr(tower, "out_dim", 0)) + int(getattr(block, "out_dim", 0))

    def forward(
        self,
        feats: EntityFeatures,
        *args: Tensor | None,
        leave_out: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``args`` go to the tower (a user tower's history), ``leave_out`` to the block."""
        if self.strip and args and args[0] is not None:
            args = (args[0][..., : -self.strip], *args[1:])  # (B, N, D + S) -> (B, N, D)
        main = self.tower(feats, *args)  # (B, D)
        block = self.block(feats) if leave_out is None else self.block(feats, leave_out)  # (B, S)
        return torch.cat([main, block.to(main.dtype)], dim=-1)  # (B, D + S)

    def param_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        for part in (self.tower, self.block):
            own = getattr(part, "param_groups", None)
            groups += own() if callable(own) else []
        return groups


__all__ = ["ItemAutoRec", "ItemRatings", "UserAutoRec", "WithBlock"]
