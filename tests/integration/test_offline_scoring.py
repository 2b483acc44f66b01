"""``Recommender.recommend(..., as_of=split)`` lists what ``evaluate`` ranks (issue 22): a
hand-written HR@10 / NDCG@10 over the lists equals the run's metrics, both ways of treating the
items a user had before the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hydrarec.recommend.recommender import Recommender
from hydrarec.run.evaluate import KNOWN_BEFORE, evaluate


def hand_metrics(rec: Recommender, split: str, keep_known: bool) -> dict[str, float]:
    """HR@10 and NDCG@10 from each held-out item's place in its user's list (one a user under
    leave-last-out): rank r < 10 is a hit worth 1 / log2(r + 2)."""
    inter = rec.run.interactions
    held = inter[inter["split"] == split]
    users = rec.run.user_ids.raw(held["user_idx"].to_numpy())
    ids, _ = rec.recommend(list(users), k=10, as_of=split, exclude_seen=not keep_known)
    targets = rec.run.item_ids.raw(held["item_idx"].to_numpy())
    hits, gains = [], []
    for listed, target in zip(ids.tolist(), targets.tolist(), strict=True):
        rank = listed.index(target) if target in listed else None
        hits.append(rank is not None)
        gains.append(0.0 if rank is None else 1.0 / np.log2(rank + 2))
    return {"retrieval/hr@10": float(np.mean(hits)), "retrieval/ndcg@10": float(np.mean(gains))}


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("keep_known", [False, True])
def test_as_of_lists_reproduce_evaluation(
    tiny_run: Path, rec: Recommender, split: str, keep_known: bool
) -> None:
    inter = rec.run.interactions
    assert inter[inter["split"] == split].groupby("user_idx").size().max() == 1  # one a user
    metrics = evaluate(tiny_run, split, exclude_known=not keep_known)
    mine = hand_metrics(rec, split, keep_known)
    for key, value in mine.items():
        assert value == pytest.approx(metrics[key], abs=1e-6), key
    assert 0.0 < mine["retrieval/hr@10"] < 1.0


def test_as_of_leaves_out_what_came_before_the_split_only(rec: Recommender) -> None:
    users = list(rec.split_users("test"))
    ids, scores = rec.recommend(users, k=30, as_of="test")
    before = rec.run.known(KNOWN_BEFORE["test"])
    for row, user in enumerate(rec.user_index(users)):
        earlier = set(
            rec.run.item_ids.raw(before.items[before.indptr[user] : before.indptr[user + 1]])
        )
        assert not set(ids[row]) - {None} & earlier
    assert np.all(np.diff(np.where(np.isfinite(scores), scores, -1e30), axis=1) <= 0)
    # the run's own recommendations blend rating and like (tiny config): a different order
    blended, _ = rec.recommend(users, k=30)
    assert not np.array_equal(blended, ids)


def test_as_of_refuses_what_evaluation_does_not_do(rec: Recommender) -> None:
    user = [rec.run.user_ids.raw([0])[0]]
    with pytest.raises(ValueError, match="as_of must be one of"):
        rec.recommend(user, k=5, as_of="train")
    with pytest.raises(ValueError, match="no allow / deny"):
        rec.recommend(user, k=5, as_of="test", allow=[rec.run.item_ids.raw([0])[0]])
