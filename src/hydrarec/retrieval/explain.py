"""Explanations: for each recommended item, the user's history items nearest to it in the item
representation space ("because you liked X"), with their cosine similarity.

Item-based explanation as in Sarwar et al., "Item-based collaborative filtering recommendation
algorithms", WWW 2001: the history items most similar to a recommendation are the ones that
support it. Vectorised over users and items: one (B, k, L) similarity tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def supporting_items(
    item_vectors: Tensor, recommended: Tensor, history: Tensor, mask: Tensor, n: int
) -> tuple[Tensor, Tensor]:
    """The ``n`` history items nearest to each recommended item, and their cosine similarity.

    item_vectors (I, D); recommended (B, k) catalogue indices, -1 for an empty slot; history
    (B, L) catalogue indices with ``mask`` (B, L) True where real. Returns (B, k, n') indices
    and similarities, n' = min(n, L), best first; -1 / NaN where there is nothing to show. The
    recommended item never supports itself (it is in the history when seen items are allowed).

    >>> v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> idx, sim = supporting_items(v, torch.tensor([[2]]), torch.tensor([[0, 1]]),
    ...                             torch.tensor([[True, False]]), n=2)
    >>> idx.tolist(), [round(s, 4) for s in sim[0, 0, :1].tolist()]
    ([[[0, -1]]], [0.7071])
    """
    b, k = recommended.shape
    width = min(n, history.shape[1])
    unit = F.normalize(item_vectors, dim=1)  # (I, D)
    rec = unit[recommended.clamp(min=0)]  # (B, k, D)
    hist = unit[history.clamp(min=0)]  # (B, L, D)
    sims = rec @ hist.transpose(1, 2)  # (B, k, L)
    valid = mask[:, None, :] & (recommended >= 0)[:, :, None]  # (B, k, L)
    valid &= history[:, None, :] != recommended[:, :, None]  # an item does not explain itself
    sims = sims.masked_fill(~valid, float("-inf"))
    top_s, top_p = torch.topk(sims, width, dim=2)  # (B, k, n')
    top_i = torch.gather(history[:, None, :].expand(b, k, -1), 2, top_p)
    empty = torch.isinf(top_s)
    return top_i.masked_fill(empty, -1), top_s.masked_fill(empty, float("nan"))
