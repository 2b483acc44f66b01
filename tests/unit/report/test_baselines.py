"""The popularity baseline of the report, on a catalogue small enough to rank by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydrarec.config import config_from_dict
from hydrarec.data.dataset import IdMap
from hydrarec.features.batch import EntityFeatures
from hydrarec.report.baselines import baselines, item_counts, popularity_metrics
from hydrarec.run.rundir import LoadedRun, RunDir


def tiny_run(path: Path) -> LoadedRun:
    """5 items, 3 users. Train counts per item: [3, 2, 1, 0, 0].

    Test rows: user 0 -> item 3, user 1 -> item 2, user 2 -> item 3.
    """
    train = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    test = [(0, 3), (1, 2), (2, 3)]
    inter = pd.DataFrame(
        {
            "user_idx": [u for u, _ in train + test],
            "item_idx": [i for _, i in train + test],
            "order": np.arange(9),
            "split": ["train"] * 6 + ["test"] * 3,
            "rating": [4.0, 4.0, 4.0, 2.0, 2.0, 2.0, 5.0, 3.0, 1.0],  # train mean 3.0
            "like": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        }
    )
    cfg = config_from_dict(
        {
            "data": {"dataset": "synthetic"},
            "eval": {"ks": [1, 3]},
            "train": {"monitor": "retrieval/ndcg@3"},  # the default, ndcg@10, is not among ks
            "tasks": [
                {"name": "retrieval", "kind": "retrieval"},
                {"name": "rating", "kind": "rating", "column": "rating"},
                {"name": "like", "kind": "binary", "column": "like"},
            ],
        }
    )
    return LoadedRun(
        run=RunDir(path),
        config=cfg,
        meta={"tasks": {"retrieval": "retrieval", "rating": "rating", "like": "binary"}},
        model=None,  # type: ignore[arg-type]  # the baseline needs no model
        users=EntityFeatures(ids=torch.arange(3)),
        items=EntityFeatures(ids=torch.arange(5)),
        user_ids=IdMap([10, 11, 12], "user"),
        item_ids=IdMap([100, 101, 102, 103, 104], "item"),
        items_raw=pd.DataFrame({"item_id": [100, 101, 102, 103, 104]}),
        interactions=inter,
    )


def test_popularity_by_hand(tmp_path: Path) -> None:
    run = tiny_run(tmp_path)
    assert item_counts(run).tolist() == [3.0, 2.0, 1.0, 0.0, 0.0]
    m = popularity_metrics(run, "test")
    # Ranks among the items the user has not seen (scores = counts), ties counted half:
    #   user 0, item 3: candidates 1 (2), 2 (1), 3 (0), 4 (0) -> 2 ahead + 1 tie / 2 = 2.5
    #   user 1, item 2: candidates 2 (1), 3 (0), 4 (0)        -> 0
    #   user 2, item 3: candidates 3 (0), 4 (0)               -> 0 + 1 tie / 2 = 0.5
    # HR@1 = 2/3 (ranks 0 and 0.5 are < 1); NDCG@1 = (1/log2(2) + 1/log2(2.5)) / 3
    # HR@3 = 1;   NDCG@3 = (1/log2(4.5) + 1 + 1/log2(2.5)) / 3
    assert m["retrieval/hr@1"] == pytest.approx(2 / 3)
    assert m["retrieval/ndcg@1"] == pytest.approx((1 + 1 / math.log2(2.5)) / 3)
    assert m["retrieval/hr@3"] == pytest.approx(1.0)
    assert m["retrieval/ndcg@3"] == pytest.approx((1 / math.log2(4.5) + 1 + 1 / math.log2(2.5)) / 3)
    # rating: predict the train mean 3.0 for labels 5, 3, 1 -> errors 2, 0, 2
    assert m["rating/rmse"] == pytest.approx(math.sqrt(8 / 3))
    assert m["rating/mae"] == pytest.approx(4 / 3)
    # like: scores = counts of items 3, 2, 3 = 0, 1, 0; the one positive (item 3, score 0)
    # beats no negative, loses to item 2 (score 1), ties item 3 (score 0): AUC = 0.5 / 2
    assert m["like/auc"] == pytest.approx(0.25)


def test_recorded_baselines_come_after_popularity(tmp_path: Path) -> None:
    run = tiny_run(tmp_path)
    (tmp_path / "baselines.json").write_text('{"SASRec": {"retrieval/ndcg@10": 0.25}}')
    found = baselines(run)
    assert list(found) == ["popularity", "SASRec"]
    assert found["SASRec"] == {"retrieval/ndcg@10": 0.25}
