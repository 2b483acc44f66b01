"""Two-tower retrieval: score = <user, item> / temperature, sampled softmax over the batch's items.

The candidates of every row are the batch's distinct items (in-batch negatives plus any sampled
ones, or the whole catalogue for a full softmax). Two corrections, both as in
tensorflow/recommenders ``tasks/retrieval.py``:

- logQ correction (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
  Recommendations", RecSys 2019): popular items appear as negatives more often, so log q_j is
  subtracted from every candidate logit. Not applied with a full softmax (nothing is sampled).
- accidental hits (TFRS ``remove_accidental_hits``): a candidate column holding the same catalogue
  item as the row's positive, other than the positive column itself, is not a negative and is
  masked out.

With ``exclude_own_items`` a row's user's own items (``own_columns``: its history, and for a
window example its whole window) are masked out of its softmax too, as BPR's negative sampling
skips a user's items: a ranking that leaves a user's items out (``recommend.exclude_seen``, the
evaluation protocols) never asks the model to rank them below anything, and an item the user
takes later is not one it dislikes.

Ranking metrics need the full catalogue: ``evaluate`` has evaluation compute them
(``HeldOut.ranking``).

Data-parallel training (issue 7): by default the negatives are PER RANK, the items of this rank's
part of the global batch. With ``gather_negatives`` every rank scores its users against the items
of ALL ranks' parts (``all_gather`` with gradient, ``torch.distributed.nn.functional``), repeated
items counted once: the same candidates as one process with the global batch, for W times the
item-vector traffic. Neither matters with a full softmax (every rank has the whole catalogue).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from hydrarec.config import RetrievalTaskConfig, TaskConfig
from hydrarec.features.batch import Batch
from hydrarec.tasks.base import HeldOut, Task, TaskContext, TaskInputs, masked_mean
from hydrarec.tasks.collectives import all_gather_rows

FULL_SOFTMAX_MAX_ITEMS = 5000  # full_softmax = None: full softmax up to this catalogue size


def sampled_softmax_loss(
    logits: Tensor,
    positive: Tensor,
    candidate_ids: Tensor,
    positive_ids: Tensor,
    log_q: Tensor | None = None,
    mask: Tensor | None = None,
    distinct: bool = False,
    hide: Tensor | None = None,
) -> Tensor:
    """Softmax cross-entropy of each row's positive column, logQ-corrected, accidental hits masked.

    logits: (B, C) scores of B rows against C candidates (already divided by the temperature);
    positive: (B,) long, column of each row's positive; candidate_ids: (C,) catalogue id of each
    column; positive_ids: (B,) catalogue id of each row's positive; log_q: (C,) log sampling
    probability of each candidate, subtracted from its logit when given; mask: (B,) bool rows
    that count (default all); distinct: the candidate ids are known to be distinct, so no column
    but the positive holds its item and the mask of accidental hits (two (B, C) passes) is
    skipped; hide: (B, C) bool (or broadcastable), more columns that are no negatives of their
    row, masked with the accidental hits. A row's positive column is never masked. Returns the
    mean over counted rows (0, still in the graph, if none).
    """
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)  # (B, C)
    if not distinct:
        hits = candidate_ids.unsqueeze(0) == positive_ids.unsqueeze(1)  # (B, C) same item
        hide = hits if hide is None else hide | hits
    if hide is not None:
        hide = hide.expand_as(logits).scatter(1, positive.unsqueeze(1), False)  # keep positive
        logits = logits.masked_fill(hide, torch.finfo(logits.dtype).min)  # exp(.) = 0, never NaN
    per_row = F.cross_entropy(logits, positive, reduction="none")  # (B,)
    return per_row.mean() if mask is None else masked_mean(per_row, mask)


def own_columns(batch: Batch) -> Tensor:
    """(B, N) long: the columns of ``batch.items`` that hold row b's user's own items, -1
    elsewhere: its history; for a window example (``batch.history_pos``) every place of its
    window, those after its own too (its segment's, when windows are packed).

    >>> from types import SimpleNamespace as B
    >>> t = torch.tensor
    >>> own_columns(B(history=t([[4, 5, 6]]), history_mask=t([[True, True, False]]),
    ...               history_pos=t([0, 1]), history_segments=t([[0, 1, 1]]))).tolist()
    [[4, -1, -1], [-1, 5, -1]]
    """
    cols, real = batch.history, batch.history_mask  # (B or W, N)
    if batch.history_pos is not None:  # row b is a place of window history_pos // N
        window, place = batch.history_pos // cols.shape[1], batch.history_pos % cols.shape[1]
        cols, real = cols[window], real[window]  # (B, N)
        if batch.history_segments is not None:
            segments = batch.history_segments[window]  # (B, N)
            real = real & (segments == segments.gather(1, place.unsqueeze(1)))
    return cols.masked_fill(~real, -1)


def repeated_columns(ids: Tensor) -> Tensor:
    """(C,) True where a column repeats the id of an earlier column, or holds padding (id < 0).

    >>> repeated_columns(torch.tensor([7, 3, 7, -1, 3, 5])).tolist()
    [False, False, True, True, True, False]
    """
    order = torch.argsort(ids, stable=True)  # equal ids keep column order: the first stays
    s = ids[order]
    again = torch.zeros_like(s, dtype=torch.bool)
    again[1:] = s[1:] == s[:-1]
    out = torch.empty_like(again)
    out[order] = again
    return out | (ids < 0)


class RetrievalTask(Task):
    """Learns the user and item vectors so that <user, item> ranks a user's items first."""

    config = RetrievalTaskConfig
    uses_tower = False

    def __init__(
        self,
        name: str,
        temperature: float,
        logq: bool,
        full_softmax: bool,
        gather_negatives: bool = False,
        exclude_own_items: bool = False,
    ) -> None:
        super().__init__(name)
        self.temperature = float(temperature)
        self.logq = logq
        self.full_softmax = full_softmax
        self.gather_negatives = gather_negatives
        self.exclude_own_items = exclude_own_items

    @classmethod
    def from_config(cls, cfg: TaskConfig, ctx: TaskContext) -> RetrievalTask:
        assert isinstance(cfg, RetrievalTaskConfig)  # build_task picks the class by cfg.kind
        full = cfg.softmax_over_catalogue(ctx.n_items, FULL_SOFTMAX_MAX_ITEMS)
        return cls(
            cfg.name, cfg.temperature, cfg.logq, full, cfg.gather_negatives, cfg.exclude_own_items
        )

    def score_pairs(self, inputs: TaskInputs, dots: Tensor | None) -> Tensor:
        """A pair's retrieval score is its dot product ``u . i`` (B,)."""
        return (inputs.user * inputs.item).sum(-1) if dots is None else dots

    def forward(self, inputs: TaskInputs) -> Tensor:
        if inputs.items is None:
            raise ValueError(f"task {self.name!r} (retrieval) needs the batch's item vectors")
        items = inputs.items
        if self._gathering():
            items = all_gather_rows(items, 0.0, grad=True)  # (W * M, D), every rank's items
        # the temperature scales the (B, D) users, not the (B, U) logits: one pass fewer over them
        return (inputs.user / self.temperature) @ items.T  # (B, D) @ (D, U) -> (B, U)

    def evaluate(self, held_out: HeldOut) -> dict[str, float]:
        return held_out.ranking()

    def blend_log(self, prediction: Tensor) -> Tensor:
        """``u . i / temperature``: the logit this task's softmax was fitted to (logQ-corrected,
        so the full-catalogue one), i.e. log P(item | user) up to a per-user constant. Stage two
        keeps it in every blend: the ranking heads only learn how pairs that happen are rated
        (issue 20)."""
        return prediction / self.temperature

    def _gathering(self) -> bool:
        """Whether candidates are gathered across ranks: training only (evaluation runs on one
        rank), and never with a full softmax (every rank already has every item)."""
        return (
            self.gather_negatives
            and self.training
            and not self.full_softmax
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        )

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Sampled softmax over ``batch.items``; rows with ``label_mask[name]`` False are skipped
        when that mask is present (e.g. to learn retrieval from liked items only)."""
        use_logq = self.logq and not self.full_softmax
        logits = output.float()  # the softmax in float32, also under bf16 autocast
        ids, log_q, pos = batch.item_index, batch.item_logq, batch.item_pos
        gathering = self._gathering()
        offset = 0  # where this rank's columns start
        hide = None  # (B or 1, C) columns that are no negatives of the row
        if gathering:  # the columns are every rank's items, as in ``forward``
            ids = all_gather_rows(ids, -1, grad=False)  # (W * M,)
            log_q = all_gather_rows(log_q, 0.0, grad=False)  # (W * M,)
            offset = dist.get_rank() * (len(ids) // dist.get_world_size())
            pos = pos + offset  # (B,)
            hide = repeated_columns(ids).unsqueeze(0)  # (1, W * M)
        if self.exclude_own_items:
            own = own_columns(batch)  # (B, N), -1: none (points at the positive, kept anyway)
            own = torch.where(own >= 0, own + offset, pos.unsqueeze(1))
            mine = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, own, True)  # (B, C)
            hide = mine if hide is None else hide | mine
        return sampled_softmax_loss(
            logits,
            pos,
            ids,
            ids[pos],  # (B,)
            log_q if use_logq else None,
            batch.label_mask.get(self.name),
            distinct=not gathering,  # a Batch's items are de-duplicated; ranks' parts may repeat
            hide=hide,
        )
