"""Full-ranking ranks on a hand-worked example: what is excluded and how ties count."""

from __future__ import annotations

import numpy as np
import torch

from hydrarec.evaluation.evaluate import full_ranking_ranks
from hydrarec.features.histories import UserHistories

# one user (index 0), 5 items scored 5, 4, 3, 3, 1 (items 0..4); the user knew items 0 and 1
USER = torch.tensor([[1.0]])
ITEMS = torch.tensor([[5.0], [4.0], [3.0], [3.0], [1.0]])
KNOWN = UserHistories(np.array([0, 0]), np.array([0, 1]), n_users=1)


def _rank(target: int, exclude_known: bool) -> float:
    ranks = full_ranking_ranks(
        USER, ITEMS, np.array([0]), np.array([0]), np.array([target]), KNOWN, 8, exclude_known
    )
    return float(ranks[0])


def test_known_items_are_left_out_by_default() -> None:
    # item 2 (score 3): items 0, 1 are known and left out; item 3 ties (half) -> rank 0.5
    assert _rank(2, exclude_known=True) == 0.5
    # item 4 (score 1): only items 2 and 3 compete above it -> rank 2
    assert _rank(4, exclude_known=True) == 2.0


def test_with_known_items_they_compete() -> None:
    # item 2: items 0, 1 above (2), item 3 ties (0.5) -> rank 2.5
    assert _rank(2, exclude_known=False) == 2.5
    assert _rank(4, exclude_known=False) == 4.0
