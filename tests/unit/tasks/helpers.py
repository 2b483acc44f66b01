"""Hand-built ``Batch`` objects for task tests (no dataset, no encoders)."""

from __future__ import annotations

import torch
from torch import Tensor

from hydrarec.features.batch import Batch, EntityFeatures


def make_batch(
    *,
    item_index: list[int],
    item_pos: list[int],
    user_index: list[int] | None = None,
    labels: dict[str, list[float]] | None = None,
    label_mask: dict[str, list[bool]] | None = None,
    item_logq: list[float] | None = None,
    users: EntityFeatures | None = None,
    items: EntityFeatures | None = None,
) -> Batch:
    """A batch of B = len(item_pos) interactions over U = len(item_index) distinct items.

    Unspecified features are ids only (catalogue index + 2, past the reserved 0 and 1); the
    history is one padded slot per row.
    """
    b = len(item_pos)
    user_idx = torch.tensor(user_index if user_index is not None else list(range(b)))
    item_idx = torch.tensor(item_index)
    return Batch(
        user_index=user_idx,
        users=users if users is not None else EntityFeatures(ids=user_idx + 2),
        item_index=item_idx,
        items=items if items is not None else EntityFeatures(ids=item_idx + 2),
        item_logq=torch.tensor(item_logq if item_logq is not None else [0.0] * len(item_index)),
        item_pos=torch.tensor(item_pos),
        history=torch.zeros(b, 1, dtype=torch.long),
        history_mask=torch.zeros(b, 1, dtype=torch.bool),
        labels={k: torch.tensor(v, dtype=torch.float32) for k, v in (labels or {}).items()},
        label_mask={k: torch.tensor(v, dtype=torch.bool) for k, v in (label_mask or {}).items()},
    )


def linear_weights(head: torch.nn.Linear, weight: list[float], bias: float) -> None:
    """Set a (1, H) linear head to hand-chosen numbers."""
    with torch.no_grad():
        head.weight.copy_(torch.tensor([weight]))
        head.bias.fill_(bias)


def tensor(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32)
