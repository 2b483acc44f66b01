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

Ranking metrics need the full catalogue and are computed by evaluation, so ``metrics`` is empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hydrarec.config import TaskConfig
from hydrarec.features.batch import Batch
from hydrarec.tasks.base import Task, TaskContext, TaskInputs, masked_mean

FULL_SOFTMAX_MAX_ITEMS = 5000  # full_softmax = None: full softmax up to this catalogue size


def sampled_softmax_loss(
    logits: Tensor,
    positive: Tensor,
    candidate_ids: Tensor,
    positive_ids: Tensor,
    log_q: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Softmax cross-entropy of each row's positive column, logQ-corrected, accidental hits masked.

    logits: (B, C) scores of B rows against C candidates (already divided by the temperature);
    positive: (B,) long, column of each row's positive; candidate_ids: (C,) catalogue id of each
    column; positive_ids: (B,) catalogue id of each row's positive; log_q: (C,) log sampling
    probability of each candidate, subtracted from its logit when given; mask: (B,) bool rows
    that count (default all). Returns the mean over counted rows (0, still in the graph, if none).
    """
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)  # (B, C)
    hits = candidate_ids.unsqueeze(0) == positive_ids.unsqueeze(1)  # (B, C) same item as positive
    hits[torch.arange(logits.shape[0], device=logits.device), positive] = False  # keep positive
    logits = logits.masked_fill(hits, torch.finfo(logits.dtype).min)  # exp(.) = 0, never NaN
    per_row = F.cross_entropy(logits, positive, reduction="none")  # (B,)
    if mask is None:
        return per_row.mean()
    return masked_mean(per_row, mask)


class RetrievalTask(Task):
    """Learns the user and item vectors so that <user, item> ranks a user's items first."""

    kind = "retrieval"
    uses_tower = False

    def __init__(self, name: str, temperature: float, logq: bool, full_softmax: bool) -> None:
        super().__init__(name)
        self.temperature = float(temperature)
        self.logq = logq
        self.full_softmax = full_softmax

    @classmethod
    def from_config(cls, cfg: TaskConfig, ctx: TaskContext) -> RetrievalTask:
        full = cfg.full_softmax
        if full is None:
            full = ctx.n_items <= FULL_SOFTMAX_MAX_ITEMS
        return cls(cfg.name, cfg.temperature, cfg.logq, full)

    def forward(self, inputs: TaskInputs) -> Tensor:
        if inputs.items is None:
            raise ValueError(f"task {self.name!r} (retrieval) needs the batch's item vectors")
        return inputs.user @ inputs.items.T / self.temperature  # (B, D) @ (D, U) -> (B, U)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Sampled softmax over ``batch.items``; rows with ``label_mask[name]`` False are skipped
        when that mask is present (e.g. to learn retrieval from liked items only)."""
        use_logq = self.logq and not self.full_softmax
        return sampled_softmax_loss(
            output.float(),  # the softmax in float32, also under bf16 autocast
            batch.item_pos,
            batch.item_index,
            batch.item_index[batch.item_pos],  # (B,)
            batch.item_logq if use_logq else None,
            batch.label_mask.get(self.name),
        )
