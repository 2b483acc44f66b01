"""Metrics as pure functions: numpy in, float out (``rank_of_targets`` is the one torch function).

Pointwise: ``rmse``, ``mae``, ``auc``, ``gauc``, ``logloss``. Ranking with one held-out item per
user: ``ranking_metrics`` from zero-based ranks, which ``rank_of_targets`` computes from a score
matrix. Ranking with several relevant items per user: ``recall_at_k`` and ``ndcg_at_k`` from a
top-k matrix (RecBole's conventions, ``recbole/evaluator/metrics.py``).

This module imports nothing from hydrarec: the tasks score their predictions with it, and any
stage (evaluation, reports, benchmarks) may use it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor


def rmse(pred: np.ndarray, label: np.ndarray) -> float:
    """Root mean squared error.

    >>> rmse(np.array([3.0, 4.0]), np.array([1.0, 4.0]))  # sqrt((4 + 0) / 2)
    1.4142135623730951
    """
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(label, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(pred: np.ndarray, label: np.ndarray) -> float:
    """Mean absolute error.

    >>> mae(np.array([3.0, 4.0, 5.0]), np.array([1.0, 4.0, 4.0]))  # (2 + 0 + 1) / 3
    1.0
    """
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(label, dtype=np.float64)
    return float(np.mean(np.abs(diff)))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula; ties get average ranks.

    AUC = (sum of the positives' ranks - P (P + 1) / 2) / (P N), ranks 1-based and ascending.
    A tie between a positive and a negative counts one half, as in scikit-learn.

    With only one class the AUC is undefined: this returns NaN (scikit-learn raises). The caller
    decides whether NaN is an error; evaluation reports it as it is.

    >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))  # 3 of 4 pairs in order
    0.75
    >>> auc(np.array([0.5, 0.5, 0.9]), np.array([0, 1, 1]))  # pairs: tie (1/2) and win (1)
    0.75
    >>> auc(np.array([0.2, 0.3]), np.array([1, 1]))
    nan
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) > 0.5
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ascending ranks of ``x``; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # start of each run of equal values in the sorted order
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def gauc(scores: np.ndarray, labels: np.ndarray, users: np.ndarray) -> float:
    """Group AUC (Zhou et al., "Deep Interest Network", KDD 2018, eq. 9).

    The AUC of each user's own impressions, averaged over the users that have both classes,
    weighted by each user's number of impressions (rows). Users with one class only are left out
    of both the sum and the weights. NaN when no user has both classes.

    Worked example: user 7 has rows (0.9, 1), (0.1, 0), (0.5, 0): AUC 1.0, weight 3. User 8 has
    (0.2, 1), (0.6, 0): AUC 0.0, weight 2. User 9 has one class: left out.
    GAUC = (3 * 1.0 + 2 * 0.0) / 5 = 0.6.

    >>> gauc(np.array([0.9, 0.1, 0.5, 0.2, 0.6, 0.3]), np.array([1, 0, 0, 1, 0, 1]),
    ...      np.array([7, 7, 7, 8, 8, 9]))
    0.6
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    u = np.asarray(users)
    order = np.argsort(u, kind="mergesort")
    s, y, u = s[order], y[order], u[order]
    bounds = np.flatnonzero(np.r_[True, u[1:] != u[:-1], True])
    total, weight = 0.0, 0
    for a, b in itertools.pairwise(bounds.tolist()):
        value = auc(s[a:b], y[a:b])
        if not np.isnan(value):
            total += value * (b - a)
            weight += b - a
    return total / weight if weight else float("nan")


def logloss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    """Binary cross-entropy of probabilities, clipped to [eps, 1 - eps] so it stays finite.

    >>> round(logloss(np.array([0.5, 0.5]), np.array([1, 0])), 6)  # -ln 0.5
    0.693147
    >>> round(logloss(np.array([1.0]), np.array([0])), 4)  # clipped to 1 - 1e-7: -ln 1e-7, not inf
    16.1181
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def ranking_metrics(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k for one held-out item per user, from its zero-based rank.

    With one relevant item the ideal DCG is 1, so NDCG@k = 1 / log2(rank + 2) when rank < k, and
    MRR@k = 1 / (rank + 1) when rank < k; both are 0 otherwise. Each is the mean over users.

    Ranks 0, 3, 12 at k = 10: HR = 2/3, NDCG = (1 + 1/log2(5)) / 3, MRR = (1 + 1/4) / 3.

    >>> m = ranking_metrics(np.array([0, 3, 12]), [10])
    >>> round(m["hr@10"], 4), round(m["ndcg@10"], 4), round(m["mrr@10"], 4)
    (0.6667, 0.4769, 0.4167)
    """
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (r + 1.0), 0.0).mean())
    return out


def recall_at_k(topk: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant| (RecBole's denominator).

    ``topk`` is (n_users, >= k) item ids, best first; ``relevant[u]`` the ids relevant to user u.
    Users with no relevant item are left out of the mean (NaN if none has one).

    User 0: top-2 (5, 3), relevant {3, 9}: 1/2. User 1: top-2 (1, 2), relevant {4}: 0.

    >>> recall_at_k(np.array([[5, 3, 9], [1, 2, 4]]), [{3, 9}, {4}], k=2)
    0.25
    """
    values = [
        len(set(row[:k].tolist()) & rel) / len(rel)
        for row, rel in zip(topk, relevant, strict=True)
        if rel
    ]
    return float(np.mean(values)) if values else float("nan")


def ndcg_at_k(topk: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean over users of DCG@k / IDCG@k with binary gains (RecBole's convention).

    DCG@k = sum over positions i < k holding a relevant item of 1 / log2(i + 2);
    IDCG@k = sum over i < min(|relevant|, k) of 1 / log2(i + 2). Users with no relevant item are
    left out (NaN if none has one).

    User 0: top-2 (5, 3), relevant {3, 9}: DCG = 1/log2(3), IDCG = 1 + 1/log2(3), NDCG = 0.3869.
    User 1: top-2 (4, 2), relevant {4}: NDCG = 1.  Mean 0.6934.

    >>> round(ndcg_at_k(np.array([[5, 3], [4, 2]]), [{3, 9}, {4}], k=2), 4)
    0.6934
    """
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)  # (k,)
    values = []
    for row, rel in zip(topk, relevant, strict=True):
        if not rel:
            continue
        gains = np.array([item in rel for item in row[:k].tolist()], dtype=np.float64)
        dcg = float((gains * discounts[: gains.size]).sum())
        idcg = float(discounts[: min(len(rel), k)].sum())
        values.append(dcg / idcg)
    return float(np.mean(values)) if values else float("nan")


def rank_of_targets(scores: Tensor, targets: Tensor, exclude_mask: Tensor | None = None) -> Tensor:
    """Zero-based rank of each row's target among the candidates, pessimistic on ties.

    rank = number of OTHER candidates, not excluded, whose score is >= the target's score. Ties
    count against the target (pessimistic convention): a model that gives every item the same
    score ranks each target last, so it cannot earn hits by ties. The target's own column is never
    counted, whether or not ``exclude_mask`` marks it.

    scores: (B, I) float; targets: (B,) long column of each row's target;
    exclude_mask: (B, I) bool, True for candidates that take no part (e.g. seen items).
    Returns (B,) long.

    Row 0: target 1 (0.5); others 0.9 (higher), 0.5 (tie -> counted), 0.1 -> rank 2.
    Row 1: target 0 (0.2); 0.7 is higher but excluded, 0.3 is higher -> rank 1.

    >>> rank_of_targets(torch.tensor([[0.9, 0.5, 0.5, 0.1], [0.2, 0.7, 0.3, 0.0]]),
    ...                 torch.tensor([1, 0]),
    ...                 torch.tensor([[False] * 4, [False, True, False, False]]))
    tensor([2, 1])
    """
    target_score = scores.gather(1, targets.unsqueeze(1))  # (B, 1)
    ahead = scores >= target_score  # (B, I)
    ahead[torch.arange(scores.shape[0], device=scores.device), targets] = False
    if exclude_mask is not None:
        ahead &= ~exclude_mask
    return ahead.sum(dim=1)  # (B,)
