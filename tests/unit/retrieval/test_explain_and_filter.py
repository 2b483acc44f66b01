"""Hand-worked examples of the explanation and of filtering over-fetched results."""

from __future__ import annotations

import math

import numpy as np
import torch

from hydrarec.retrieval.base import Exclusion, drop_excluded
from hydrarec.retrieval.explain import supporting_items


def test_supporting_items_are_the_nearest_history_items_by_cosine() -> None:
    # items: 0 = (1, 0), 1 = (0, 1), 2 = (1, 1), 3 = (3, 1)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    # user history [0, 1, 3]; recommended 2 and an empty slot
    idx, sim = supporting_items(
        v,
        torch.tensor([[2, -1]]),
        torch.tensor([[0, 1, 3]]),
        torch.tensor([[True, True, True]]),
        n=2,
    )
    # cos(2, 3) = 4 / (sqrt 2 * sqrt 10) = 0.8944; cos(2, 0) = cos(2, 1) = 1 / sqrt 2 = 0.7071
    assert idx[0, 0].tolist() == [3, 0]
    assert [round(s, 4) for s in sim[0, 0].tolist()] == [0.8944, 0.7071]
    assert idx[0, 1].tolist() == [-1, -1] and all(math.isnan(s) for s in sim[0, 1].tolist())


def test_an_item_never_explains_itself_and_padding_is_ignored() -> None:
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    idx, sim = supporting_items(
        v, torch.tensor([[2]]), torch.tensor([[0, 2, 1]]), torch.tensor([[False, True, True]]), n=3
    )
    # history item 0 is padding, item 2 is the recommendation itself: only item 1 remains
    assert idx[0, 0].tolist() == [1, -1, -1]
    assert round(float(sim[0, 0, 0]), 4) == 0.7071


def test_drop_excluded_keeps_order_and_pads() -> None:
    ids = np.array([[5, 3, 9, 1], [2, 4, 6, -1]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [9.0, 8.0, 7.0, -np.inf]], dtype=np.float32)
    ex = Exclusion(np.array([0, 0, 1]), np.array([3, 1, 4]))  # row 0: no 3, 1; row 1: no 4
    out_ids, out_scores = drop_excluded(ids, scores, ex, k=3)
    assert out_ids.tolist() == [[5, 9, -1], [2, 6, -1]]
    assert out_scores.tolist() == [[4.0, 2.0, -np.inf], [9.0, 7.0, -np.inf]]
