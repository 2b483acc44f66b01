"""The cold-item protocol (issue 20): held-out items ranked among themselves, hand-worked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydrarec.config import config_from_dict
from hydrarec.errors import ConfigError
from hydrarec.evaluation.evaluate import held_out_ranking

# 1-d vectors, so a score is a product. Items 0..5 score 6, 5, 4, 3, 2, 1 for user 0 (vector 1)
# and the reverse for user 1 (vector -1). Items 0 and 1 are warm (no held-out row): they would
# win every full ranking, and here they are no candidates.
USERS = torch.tensor([[1.0], [-1.0]])
ITEMS = torch.tensor([[6.0], [5.0], [4.0], [3.0], [2.0], [1.0]])
# held-out rows: user 0 had items 3 and 5, user 1 item 2; candidates: items 2, 3, 5
INVERSE = np.array([0, 0, 1])
ROWS_ITEM = np.array([3, 5, 2])


def test_users_rank_the_held_out_items_only() -> None:
    m = held_out_ranking(USERS, ITEMS, INVERSE, ROWS_ITEM, ks=[1, 2], batch_size=1)
    # user 0 ranks 2 (4), 3 (3), 5 (1): top-1 [2] holds none of {3, 5}; top-2 [2, 3] holds 3
    # user 1 ranks 5 (-1), 3 (-3), 2 (-4): top-2 [5, 3] misses {2}
    assert m["recall@1"] == 0.0 and m["hr@1"] == 0.0 and m["mrr@1"] == 0.0
    # recall@2: user 0 1/2, user 1 0 -> 0.25; hr@2: 1 of 2 users; mrr@2: (1/2 + 0) / 2
    assert m["recall@2"] == pytest.approx(0.25)
    assert m["hr@2"] == pytest.approx(0.5)
    assert m["mrr@2"] == pytest.approx(0.25)
    # ndcg@2: user 0 DCG 1/log2(3), IDCG 1 + 1/log2(3) -> 0.3869; user 1 0 -> 0.1934
    assert m["ndcg@2"] == pytest.approx(0.5 * (1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_a_perfect_ranking_scores_one() -> None:
    # user 1 (vector -1) prefers low scores: its held-out item 5 (score -1) comes first
    m = held_out_ranking(USERS[1:], ITEMS, np.array([0]), np.array([5]), ks=[1], batch_size=4)
    assert m == {"recall@1": 1.0, "ndcg@1": 1.0, "hr@1": 1.0, "mrr@1": 1.0}


def test_a_cold_item_split_selects_on_recall() -> None:
    """``train.monitor`` accepts the held-out ranking's recall on a cold-item split only."""
    raw = {
        "data": {"split": {"kind": "cold_item"}},
        "tasks": [{"name": "retrieval", "kind": "retrieval"}],
        "train": {"monitor": "retrieval/recall@10"},
    }
    assert config_from_dict(raw).train.monitor == "retrieval/recall@10"
    raw["data"] = {"split": {"kind": "random"}}
    with pytest.raises(ConfigError, match="retrieval/recall@10"):
        config_from_dict(raw)
