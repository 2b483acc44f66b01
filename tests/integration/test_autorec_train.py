"""A model with both AutoRec paths (model.autorec, model.user_autorec; issue 8) trains, saves,
loads and serves through the ordinary paths: train -> run directory -> evaluate / Recommender,
cold items included."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests.integration.tiny import tiny_raw

from hydrarec.config import config_from_dict
from hydrarec.encoders.autorec import BagEncoder
from hydrarec.io.progress import Progress
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.catalogue import add_items
from hydrarec.run.evaluate import evaluate
from hydrarec.run.rundir import load_run
from hydrarec.run.train import train


@pytest.fixture(scope="module")
def autorec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tiny_raw(epochs=2)
    raw["model"]["autorec"] = {"hidden": 8, "input_dropout": 0.1, "l2": 0.001}
    raw["model"]["user_autorec"] = {"hidden": 4, "l2": 0.001, "lr": 0.02}
    raw["tasks"] = [t for t in raw["tasks"] if t["kind"] != "retrieval"]  # not combinable
    out = tmp_path_factory.mktemp("runs") / "autorec"
    train(config_from_dict(raw), out, progress=Progress(enabled=False))
    return out


def block_of(run: Path) -> BagEncoder:
    block = load_run(run).model.item_encoder.blocks[0]  # the I-AutoRec item bags
    assert isinstance(block, BagEncoder)
    return block


def test_the_run_carries_the_train_bags_and_evaluates_the_same(autorec_run: Path) -> None:
    loaded = load_run(autorec_run)
    inter = loaded.interactions
    train_rows = inter[(inter["split"] == "train") & inter["rating"].notna()]
    block = block_of(autorec_run)
    assert len(block.ratings) == len(train_rows)  # every train rating, nothing held out
    assert loaded.model.side_dim == 9 + 5  # [h_i, 1] + [W_i, b_i] on items, mirrored on users
    assert float(block.ratings.sum()) == pytest.approx(float(train_rows["rating"].sum()))
    metrics = evaluate(autorec_run, "test")
    saved = json.loads((autorec_run / "metrics.json").read_text())["test"]
    assert metrics["rating/rmse"] == pytest.approx(saved["rating/rmse"], rel=1e-6)
    assert all(math.isfinite(v) for v in metrics.values())


def test_added_items_get_the_zero_block_and_finite_predictions(
    autorec_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(autorec_run, run)
    items = pd.read_parquet(run / "data" / "items.parquet")
    added = add_items(run, items.head(3).assign(item_id=items["item_id"].head(3) + 1000))
    rec = Recommender.load(run)
    new = torch.arange(added.first_index, added.n_items)
    assert bool((rec.run.items.ids[new] == 1).all())  # out of vocabulary: no ratings, no bag
    side = rec.model.side_dim
    assert torch.equal(rec.item_vectors[new, -side:], torch.zeros(len(new), side))
    users = [rec.run.user_ids.raw_ids[0]] * len(added.ids)
    preds = rec.predict(users, added.ids)
    assert np.isfinite(preds["rating"]).all() and np.isfinite(preds["like"]).all()
    every = rec.predict(users[:1] * rec.n_items, rec.run.item_ids.raw_ids.tolist())
    assert np.isfinite(every["rating"]).all()
    ids, scores = rec.recommend(users[:1], k=5)
    assert ids.shape == (1, 5) and np.isfinite(scores).all()
