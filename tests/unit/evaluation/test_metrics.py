"""Metric functions against hand-computed tables (and brute force where one exists)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hydrarec.tasks.metrics import (
    auc,
    gauc,
    logloss,
    mae,
    ndcg_at_k,
    rank_of_targets,
    ranking_metrics,
    recall_at_k,
    rmse,
)


def test_rmse_and_mae() -> None:
    # errors -1, 0, 2, -1: RMSE = sqrt((1 + 0 + 4 + 1) / 4) = sqrt(1.5); MAE = 4 / 4 = 1
    pred, label = np.array([2.0, 3.0, 5.0, 3.0]), np.array([3.0, 3.0, 3.0, 4.0])
    assert rmse(pred, label) == pytest.approx(math.sqrt(1.5))
    assert mae(pred, label) == pytest.approx(1.0)


def test_auc_with_ties() -> None:
    # scores / labels: (.8, 1) (.5, 1) (.5, 0) (.2, 0) (.5, 0)
    # positive-negative pairs: .8 beats .5, .2, .5 -> 3;
    # .5 ties .5 twice (2 x 1/2) and beats .2 -> 2
    # AUC = 5 / 6
    scores = np.array([0.8, 0.5, 0.5, 0.2, 0.5])
    labels = np.array([1, 1, 0, 0, 0])
    assert auc(scores, labels) == pytest.approx(5 / 6)


def test_auc_matches_brute_force_pairs() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    labels = rng.integers(0, 2, size=60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    brute = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert auc(scores, labels) == pytest.approx(brute)


def test_auc_with_one_class_is_nan() -> None:
    assert math.isnan(auc(np.array([0.1, 0.9]), np.array([0, 0])))


def test_gauc_weights_users_by_impressions() -> None:
    # user 1: (.9,1) (.3,0) (.4,0) (.1,0) -> AUC 1, 4 rows
    # user 2: (.2,1) (.6,0)              -> AUC 0, 2 rows
    # user 3: (.5,1) (.5,0)              -> AUC 1/2 (tie), 2 rows
    # user 4: (.7,0)                     -> one class, left out
    # GAUC = (4 * 1 + 2 * 0 + 2 * 0.5) / 8 = 5 / 8 (the unweighted mean would be 1/2)
    scores = np.array([0.9, 0.3, 0.4, 0.1, 0.2, 0.6, 0.5, 0.5, 0.7])
    labels = np.array([1, 0, 0, 0, 1, 0, 1, 0, 0])
    users = np.array([1, 1, 1, 1, 2, 2, 3, 3, 4])
    assert gauc(scores, labels, users) == pytest.approx(5 / 8)
    # order of rows does not matter
    perm = np.random.default_rng(1).permutation(9)
    assert gauc(scores[perm], labels[perm], users[perm]) == pytest.approx(5 / 8)
    assert math.isnan(gauc(np.array([0.1]), np.array([1]), np.array([4])))


def test_logloss_by_hand_and_clipped() -> None:
    # -(ln .8 + ln(1 - .4)) / 2 = -(−0.223144 − 0.510826) / 2 = 0.366985
    assert logloss(np.array([0.8, 0.4]), np.array([1, 0])) == pytest.approx(0.366985, abs=1e-6)
    # p = 0 with label 1 is clipped to 1e-6: -ln 1e-6 = 13.815511, finite
    assert logloss(np.array([0.0]), np.array([1]), eps=1e-6) == pytest.approx(-math.log(1e-6))


def test_ranking_metrics_by_hand() -> None:
    # zero-based ranks 0, 3, 12
    # @10: HR = 2/3; NDCG = (1/log2(2) + 1/log2(5) + 0) / 3 = (1 + 0.430677) / 3 = 0.476892
    #      MRR = (1 + 1/4 + 0) / 3 = 0.416667
    # @20: all hit: HR = 1; NDCG = (1 + 1/log2(5) + 1/log2(14)) / 3; MRR = (1 + 1/4 + 1/13) / 3
    m = ranking_metrics(np.array([0, 3, 12]), [10, 20])
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert m["ndcg@10"] == pytest.approx(0.476892, abs=1e-6)
    assert m["mrr@10"] == pytest.approx(1.25 / 3)
    assert m["hr@20"] == 1.0
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(14)) / 3)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 4 + 1 / 13) / 3)
    assert set(m) == {"hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20"}


def test_rank_at_k_boundary() -> None:
    # rank 9 is the 10th place: a hit at 10; rank 10 is not
    m = ranking_metrics(np.array([9, 10]), [10])
    assert m["hr@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx(0.5 / math.log2(11))


def test_recall_and_ndcg_with_several_relevant_items() -> None:
    # user 0: top-3 (5, 3, 9), relevant {3, 9, 7}: hits at positions 1, 2
    #   recall@3 = 2/3; DCG = 1/log2(3) + 1/log2(4) = 0.630930 + 0.5 = 1.130930
    #   IDCG (3 relevant, k = 3) = 1 + 0.630930 + 0.5 = 2.130930 -> NDCG = 0.530721
    # user 1: top-3 (4, 2, 8), relevant {4}: recall 1, NDCG 1
    # user 2: no relevant items: left out
    # means: recall = (2/3 + 1) / 2 = 5/6; NDCG = (0.530721 + 1) / 2 = 0.765361
    topk = np.array([[5, 3, 9], [4, 2, 8], [1, 2, 3]])
    relevant = [{3, 9, 7}, {4}, set()]
    assert recall_at_k(topk, relevant, k=3) == pytest.approx(5 / 6)
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(topk, relevant, k=3) == pytest.approx((dcg / idcg + 1) / 2)
    assert ndcg_at_k(topk, relevant, k=3) == pytest.approx(0.765361, abs=1e-6)


def test_ndcg_ideal_is_truncated_at_k() -> None:
    # top-2 both relevant out of 3 relevant: ideal DCG@2 also has 2 hits -> NDCG@2 = 1,
    # recall@2 = 2/3
    topk, relevant = np.array([[1, 2]]), [{1, 2, 3}]
    assert ndcg_at_k(topk, relevant, k=2) == pytest.approx(1.0)
    assert recall_at_k(topk, relevant, k=2) == pytest.approx(2 / 3)


def test_rank_of_targets_is_pessimistic_on_ties_and_skips_excluded() -> None:
    # row 0: target col 2 (0.5): others 0.9 (higher), 0.5 (tie, counted), 0.1 -> rank 2
    # row 1: target col 0 (0.2): 0.7 higher but excluded, 0.3 higher, 0.0 lower -> rank 1
    # row 2: all scores equal -> every other candidate ties -> rank 3 (last): no free hits
    # row 3: target excluded itself is still ranked; 0.8 higher -> rank 1
    scores = torch.tensor(
        [[0.9, 0.5, 0.5, 0.1], [0.2, 0.7, 0.3, 0.0], [1.0, 1.0, 1.0, 1.0], [0.8, 0.1, 0.2, 0.0]]
    )
    targets = torch.tensor([2, 0, 1, 2])
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[1, 1] = True
    exclude[3, 2] = True
    ranks = rank_of_targets(scores, targets, exclude)
    assert ranks.tolist() == [2, 1, 3, 1]
    assert rank_of_targets(scores, targets).tolist() == [2, 2, 3, 1]  # no exclusion: row 1 sees 0.7


def test_rank_of_targets_agrees_with_sorting_without_ties() -> None:
    torch.manual_seed(0)
    scores = torch.randn(5, 50)
    targets = torch.randint(0, 50, (5,))
    order = scores.argsort(dim=1, descending=True)
    expected = (order == targets[:, None]).int().argmax(dim=1)
    assert torch.equal(rank_of_targets(scores, targets), expected)
