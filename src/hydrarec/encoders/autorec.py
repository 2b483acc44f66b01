"""AutoRec as blocks of the two towers (issue 8).

Sedhain, Menon, Sanner & Xie, "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015.
I-AutoRec reconstructs an item's ratings over all users, r_i (observed entries only):

    h_i   = sigmoid(V r_i + c)          (K,)   V: (K, n_users), unobserved entries of r_i are 0
    r_ui  = W_u . h_i + b_u             ()     row u of the decoder (W, b)

That is a dot product of an ITEM vector computed from the item's ratings and a USER vector, so it
fits the towers as one more block at the end of each vector:

    item block = [h_i, 1]   (K + 1)   ``BagEncoder``: an EmbeddingBag over the users who rated the
                                      item in train, weighted by their ratings, then the sigmoid
    user block = [W_u, b_u] (K + 1)   ``Decoder``: the user id's decoder row and bias

and dot(user block, item block) = W_u . h_i + b_u. U-AutoRec is the mirror image: the USER's
ratings over items are encoded (a ``BagEncoder`` in the user tower) and each item has a decoder
row (a ``Decoder`` in the item tower). ``MultiTaskRecommender(side_dim=...)`` hands the blocks to
the tasks apart from the rest of the vectors, which the multi-task architecture reads, and the
rating task turns each pair of blocks into a path of its own (``tasks/rating.py``).

The bags are the TRAIN ratings (``RatingBags``), kept as buffers so that a run's weights hold
them (loading a run needs no data). In the paper an item's input includes the very ratings its
output is trained on, and only the bottleneck and the L2 keep it from copying them. Here, in
training, the bags leave out the ratings of the batch's own (user, item) pairs (``leave_out``):
the block never sees a rating it is trained to predict, which is the situation at evaluation,
where held-out ratings are never in the bags (on ML100K-U1 this beat the paper's way and input
dropout alike; benchmarks/results/ML100K-U1.md). Also available: input dropout, a share of every
bag's ratings dropped per training forward (inverted dropout, the denoising of Vincent et al.
2008). An entity with no ratings left in its bag (unseen in train, added later, or all left out)
gets the zero block, whose last channel, the "has ratings" flag, is 0: the rating task then
predicts without that path.

The paper's L2, ``l2 * (||V||^2 + ||W||^2)`` in the loss, is added as its gradient ``2 l2 V`` in
the backward of the forward that reads the weight (``with_l2``), so the trainer sees ordinary
parameters and knows nothing of it. It is not AdamW's decoupled weight decay, on purpose: Adam
divides this gradient, like the data's, by each entry's gradient scale, so the rows of rarely
seen users are held much closer to zero; decoupled decay shrinks every row alike and let W
memorise the train ratings (benchmarks/results/ML100K-U1.md). The train loss that is logged
leaves the penalty out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydrarec.config import AutoRecConfig
from hydrarec.encoders.blocks import param_groups_of
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
class RatingBags:
    """Each row entity's train ratings (an item's by user for I-AutoRec, a user's by item for
    U-AutoRec), by id-vocabulary index, in CSR form.

    indptr: (n_rows + 1,) the ratings of row j are entries indptr[j]:indptr[j+1];
    cols: (nnz,) id-vocabulary index of the other entity of each rating; ratings: (nnz,) float32.
    """

    indptr: Tensor
    cols: Tensor
    ratings: Tensor

    @classmethod
    def from_pairs(
        cls, rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray, n_rows: int
    ) -> RatingBags:
        """From parallel arrays of (row id index, column id index, rating) of the train rows.

        >>> b = RatingBags.from_pairs(np.array([2, 4, 2]), np.array([3, 2, 2]),
        ...                           np.array([5.0, 1.0, 4.0]), n_rows=5)
        >>> b.indptr.tolist(), b.cols.tolist(), b.ratings.tolist()
        ([0, 0, 0, 2, 2, 3], [2, 3, 2], [4.0, 5.0, 1.0])
        """
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        ratings = np.asarray(ratings, np.float32)
        if not (len(rows) == len(cols) == len(ratings)):
            raise DataError("RatingBags: rows, cols and ratings differ in length")
        if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
            raise DataError(f"RatingBags: row index outside 0..{n_rows - 1}")
        if not np.isfinite(ratings).all():
            raise DataError("RatingBags: ratings must be finite (a NaN label slipped through)")
        order = np.lexsort((cols, rows))  # by row, then column: a deterministic layout
        indptr = np.zeros(n_rows + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        return cls(
            torch.from_numpy(indptr),
            torch.from_numpy(cols[order]),
            torch.from_numpy(ratings[order]),
        )


class BagEncoder(nn.Module):
    """Id indices (N,) -> the AutoRec block [h, 1] (N, K + 1) of each one's bag of ratings;
    the zero block for an empty bag. ``n_rows`` ids are encoded, over ``n_cols`` columns."""

    indptr: Tensor  # buffers: the bags (``RatingBags``)
    cols: Tensor
    ratings: Tensor

    def __init__(
        self, n_rows: int, n_cols: int, cfg: AutoRecConfig, bags: RatingBags | None = None
    ) -> None:
        super().__init__()
        self.hidden = cfg.hidden
        self.out_dim = cfg.hidden + 1
        self.input_dropout = cfg.input_dropout
        self.leave_out = cfg.leave_out
        self.l2 = cfg.l2
        self.lr = cfg.lr
        # row c of ``encoder`` is column c of V, with nn.Linear's init of a (K, n_cols) weight;
        # a plain parameter, so no embedding-table machinery (sparse updates) applies to it
        bound = 1.0 / n_cols**0.5
        self.encoder = nn.Parameter(torch.empty(n_cols, cfg.hidden).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(cfg.hidden))  # c
        # persistent buffers: the run's weights carry the bags; their sizes follow the state dict
        bags = bags or RatingBags.from_pairs(np.zeros(0), np.zeros(0), np.zeros(0), n_rows)
        if bags.indptr.shape[0] != n_rows + 1:
            raise DataError(f"BagEncoder: bags of {bags.indptr.shape[0] - 1} ids, not {n_rows}")
        if len(bags.cols) and int(bags.cols.max()) >= n_cols:
            raise DataError(f"BagEncoder: a rating's column index is outside 0..{n_cols - 1}")
        self.register_buffer("indptr", bags.indptr.clone())
        self.register_buffer("cols", bags.cols.clone())
        self.register_buffer("ratings", bags.ratings.clone())

    def forward(
        self, feats: EntityFeatures, leave_out: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """``leave_out``: (column id indices (P,), rows of ``feats`` (P,)): ratings taken out of
        the bag of that row (the batch's own pairs, in training)."""
        rows, entries, offsets = self._entries(feats.ids)  # (n,), (n,), (N,)
        cols, weights = self.cols[entries], self.ratings[entries]  # (n,) each
        keep = torch.ones_like(rows, dtype=torch.bool)  # (n,)
        if leave_out is not None and self.leave_out:
            n_cols = self.encoder.shape[0]
            pairs = leave_out[1] * n_cols + leave_out[0]  # (P,) one key per (row, column)
            keep &= ~torch.isin(rows * n_cols + cols, pairs)
        if self.training and self.input_dropout > 0:  # inverted dropout of bag entries
            keep &= torch.rand(keep.shape, device=keep.device) >= self.input_dropout
            weights = weights / (1.0 - self.input_dropout)
        v = with_l2(self.encoder, self.l2)  # (n_cols, K)
        pre = F.embedding_bag(cols, v, offsets, mode="sum", per_sample_weights=weights * keep)
        h = torch.sigmoid(pre + self.bias)  # (N, K)
        block = torch.cat([h, torch.ones_like(h[:, :1])], dim=-1)  # (N, K + 1)
        kept = torch.zeros(len(offsets), device=h.device).index_add_(0, rows, keep.to(h.dtype))
        return block * (kept > 0).unsqueeze(-1).to(h.dtype)  # (N, K + 1); empty bag -> zeros

    def _entries(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The bags of ids (N,) laid end to end: each entry's row (n,), its index in the
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
        for name in ("cols", "ratings"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=self.indptr.device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def param_groups(self) -> list[dict[str, Any]]:
        """No AdamW weight decay: V has its L2 (``with_l2``), the bias c none."""
        return block_group(self, self.lr)


class Decoder(nn.Module):
    """Id indices (B,) -> the AutoRec block [W_u, b_u] (B, K + 1): each id's decoder row and bias.

    The out-of-vocabulary and padding rows start at zero and no train rating reaches them, so an
    id unseen in train keeps a zero block.
    """

    def __init__(self, n_rows: int, cfg: AutoRecConfig) -> None:
        super().__init__()
        self.out_dim = cfg.hidden + 1
        self.l2 = cfg.l2
        self.lr = cfg.lr
        # W, one (K,) row per id, with nn.Linear's init of W; plain parameters, as in BagEncoder
        bound = 1.0 / cfg.hidden**0.5
        self.decoder = nn.Parameter(torch.empty(n_rows, cfg.hidden).uniform_(-bound, bound))
        with torch.no_grad():
            self.decoder[:2].zero_()  # padding and out of vocabulary
        # b starts at 0: the rating path has its own global mean (tasks/rating.py)
        self.bias = nn.Parameter(torch.zeros(n_rows, 1))

    def forward(
        self, feats: EntityFeatures, leave_out: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """``leave_out`` is ignored: a decoder reads no ratings."""
        w = F.embedding(feats.ids, with_l2(self.decoder, self.l2))  # (B, K)
        return torch.cat([w, F.embedding(feats.ids, self.bias)], dim=-1)  # (B, K + 1)

    def param_groups(self) -> list[dict[str, Any]]:
        """No AdamW weight decay: W has its L2 (``with_l2``), the biases b none."""
        return block_group(self, self.lr)


class WithBlocks(nn.Module):
    """A tower whose vectors get blocks appended: ``[tower(feats, ...) (D), blocks(feats) (S)]``.

    The tower is unchanged (its state lives under ``tower.``); the blocks read the same features.
    ``strip``: a user tower's history holds ITEM vectors, which carry the item blocks at their end;
    the tower reads them without their last ``strip`` channels, as it was built to.
    """

    def __init__(self, tower: nn.Module, blocks: list[nn.Module], strip: int = 0) -> None:
        super().__init__()
        self.tower = tower
        self.blocks = nn.ModuleList(blocks)
        self.strip = strip
        widths = [int(getattr(b, "out_dim", 0)) for b in blocks]
        self.out_dim = int(getattr(tower, "out_dim", 0)) + sum(widths)

    def forward(
        self,
        feats: EntityFeatures,
        *args: Tensor | None,
        leave_out: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``args`` go to the tower (a user tower's history), ``leave_out`` to the blocks."""
        if self.strip and args and args[0] is not None:
            args = (args[0][..., : -self.strip], *args[1:])  # (B, N, D + S) -> (B, N, D)
        main = self.tower(feats, *args)  # (B, D)
        blocks = [block(feats, leave_out).to(main.dtype) for block in self.blocks]
        return torch.cat([main, *blocks], dim=-1)  # (B, D + S)

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups_of(self.tower, *self.blocks)


__all__ = ["BagEncoder", "Decoder", "RatingBags", "WithBlocks"]
