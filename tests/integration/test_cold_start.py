"""Cold-start items end to end (issue 4): a run trained with item text, items never seen in
training, and items added to the trained run with ``add_items`` / ``hydrarec add-items``.

One small synthetic run with text is trained per module (seconds, plus loading MiniLM once); the
tests that add items work on copies of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from filelock import FileLock
from typer.testing import CliRunner

from hydrarec.cli import app
from hydrarec.config import config_from_dict
from hydrarec.errors import DataError, RunError
from hydrarec.features.text import TextEncoder
from hydrarec.io.atomic import read_json
from hydrarec.io.progress import Progress
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.catalogue import LOCK, add_items, add_items_file
from hydrarec.run.index import build_index, saved_index
from hydrarec.run.rundir import RunDir, load_run
from hydrarec.run.train import train
from hydrarec.serving import create_app

TEMPLATE = "{title}. Genres: {genres}"


def text_config(
    cache: Path, text: dict[str, Any] | None = None, train: dict[str, Any] | None = None
) -> Any:
    """The cold-item text config; ``text`` / ``train``: settings to override."""
    return config_from_dict({
        "data": {
            "dataset": "synthetic",
            "synthetic": {"n_users": 80, "n_items": 60, "n_interactions": 2400, "seed": 3},
            "split": {"kind": "cold_item", "valid_ratio": 0.1, "test_ratio": 0.1, "seed": 0},
        },
        "model": {
            "dim": 16, "embedding_dim": 8, "tower_hidden": [32],
            "sequence": {"kind": "transformer", "max_len": 8, "layers": 1, "heads": 2},
            "architecture": {"name": "mmoe", "hidden": [16], "tower": [8], "experts": 2},
            "text": {"enabled": True, "template": TEMPLATE, "id_dropout": 0.3,
                     "cache_dir": str(cache), **(text or {})},
        },
        "train": {"epochs": 4, "batch_size": 128, "lr": 0.01, "seed": 0, "patience": 4,
                  **(train or {})},
        "tasks": [
            {"name": "retrieval", "kind": "retrieval"},
            {"name": "like", "kind": "binary", "rule": "rating >= 4"},
        ],
    })  # fmt: skip


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run with item text (read-only: tests that change a run copy it)."""
    root = tmp_path_factory.mktemp("cold")
    out = root / "run"
    train(text_config(root / "cache"), out, progress=Progress(enabled=False))
    return out


@pytest.fixture
def run_copy(text_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(text_run, tmp_path / "run"))


def clone_of(run: Path, raw_id: Any, new_id: int) -> pd.DataFrame:
    """A new item with the same text and features as item ``raw_id`` of the run."""
    items = pd.read_parquet(run / "data" / "items.parquet")
    row = items[items["item_id"] == raw_id].copy()
    return row.assign(item_id=new_id).reset_index(drop=True)


def test_run_saves_and_reloads_its_text_vectors(text_run: Path) -> None:
    loaded = load_run(text_run)
    assert loaded.meta["item_spec"]["text_dim"] == 384
    assert loaded.items.text is not None and loaded.items.text.shape == (60, 384)
    cfg = loaded.config.model.text
    expected = TextEncoder(cfg, progress=False).encode_items(loaded.items_raw.assign(
        genres=loaded.items_raw["genres"].str.split("|")))  # fmt: skip
    torch.testing.assert_close(loaded.items.text, expected)  # the cache, and the same texts
    state = read_json(text_run / "features" / "text.json")
    assert state["template"] == TEMPLATE and state["dim"] == 384


def test_cold_items_get_finite_distinct_vectors_and_predictions(text_run: Path) -> None:
    rec = Recommender.load(text_run)
    inter = rec.run.interactions
    cold = np.setdiff1d(inter["item_idx"], inter.loc[inter["split"] == "train", "item_idx"])
    assert len(cold) == 12  # 20 % of 60 items held out with all their interactions
    assert (rec.run.items.ids[torch.as_tensor(cold)] == 1).all()  # out of vocabulary
    v = rec.item_vectors[torch.as_tensor(cold)]
    assert torch.isfinite(v).all()
    assert torch.cdist(v, v).add(torch.eye(len(cold)) * 9).min() > 1e-3  # pairwise distinct
    users = rec.run.user_ids.raw_ids[: len(cold)]
    preds = rec.predict(list(users), list(rec.run.item_ids.raw(cold)))
    assert all(np.isfinite(p).all() for p in preds.values())


def test_added_items_are_recommended_where_their_twins_are(run_copy: Path) -> None:
    """Add a twin of every item (same text and genres, new id). The twins have no id embedding,
    so they score lower than the originals, but each user's top 10 among the twins matches their
    top 10 among the originals far above chance (10 / 60)."""
    items = pd.read_parquet(run_copy / "data" / "items.parquet")
    old = items["item_id"].tolist()
    added = add_items(run_copy, items.assign(item_id=items["item_id"] + 1000), progress=False)
    assert (added.first_index, added.n_items) == (60, 120)
    rec = Recommender.load(run_copy)  # reloading the run picks the new items up
    assert rec.n_items == 120 and bool((rec.run.items.ids[60:] == 1).all())  # out of vocabulary
    users = list(rec.run.user_ids.raw_ids)
    top_old, _ = rec.recommend(users, k=10, exclude_seen=False, allow=old)
    top_new, _ = rec.recommend(users, k=10, exclude_seen=False, allow=added.ids)
    overlap = np.mean(
        [len(set(o + 1000) & set(n)) / 10 for o, n in zip(top_old, top_new, strict=True)]
    )
    assert overlap >= 0.4, f"top-10 overlap {overlap:.2f}"
    pop = rec.run.interactions["item_idx"].value_counts().index[0]
    twin = rec.run.item_ids.raw([pop])[0]
    ids, _ = rec.recommend(users, k=10)  # seen items excluded, every item a candidate
    assert (ids == twin + 1000).any(), "the popular item's twin is nobody's recommendation"


def test_cli_add_items_then_recommend(run_copy: Path, tmp_path: Path) -> None:
    csv = tmp_path / "new.csv"
    new = pd.concat([clone_of(run_copy, 1, 20_001), clone_of(run_copy, 2, 20_002)])
    new.to_csv(csv, index=False)
    result = CliRunner().invoke(app, ["add-items", str(run_copy), str(csv), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "added 2 items" in result.output
    rec = Recommender.load(run_copy)
    ids, scores = rec.recommend(list(rec.run.user_ids.raw_ids[:5]), k=61, exclude_seen=False)
    assert {20_001, 20_002} <= set(ids.ravel().tolist())
    assert np.isfinite(scores).all()
    assert read_json(run_copy / "model.json")["n_items"] == 62


def test_an_added_item_is_scored_as_the_same_item_held_out_of_training(run_copy: Path) -> None:
    """Issue 20: an item added to a trained run takes the path a held-out item of the same run
    took at training time (id out of vocabulary, text and features): a clone of a held-out item
    added under a new id gets its vector, predictions, neighbours, index entries, recommendation
    score and HTTP answers."""
    before = Recommender.load(run_copy)
    inter = before.run.interactions
    cold = np.setdiff1d(inter["item_idx"], inter.loc[inter["split"] == "train", "item_idx"])
    original = int(before.run.item_ids.raw(cold[:1])[0])
    add_items(run_copy, clone_of(run_copy, original, 70_001), progress=False)
    build_index(run_copy, "faiss_hnsw")
    rec = Recommender.load(run_copy, index="faiss_hnsw")
    old, new = rec.item_index([original, 70_001])
    torch.testing.assert_close(rec.item_vectors[new], rec.item_vectors[old], rtol=0, atol=1e-6)
    torch.testing.assert_close(rec.item_vectors[old], before.item_vectors[old])  # unchanged
    users = list(rec.run.user_ids.raw_ids[:6])
    got, want = rec.predict(users, [70_001] * 6), rec.predict(users, [original] * 6)
    assert set(got) == {"retrieval", "like"}
    for task in got:
        np.testing.assert_allclose(got[task], want[task], rtol=1e-5, atol=1e-6)
    ids, sims = rec.similar_items([70_001], k=1)  # its twin is its nearest item, at cosine 1
    assert ids[0, 0] == original and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    rec.config.recommend.blend = {"like": 1.0}  # stage two too (the held-out item is seen)
    ids, scores = rec.recommend(users, k=2, allow=[original, 70_001], exclude_seen=False)
    assert all(set(row) == {original, 70_001} for row in ids.tolist())
    np.testing.assert_allclose(scores[:, 0], scores[:, 1], rtol=1e-5, atol=1e-5)
    uv = rec.user_vectors(rec.user_index(users))  # the FAISS index holds both, scored alike
    found, dots = rec.index.search(uv, k=rec.n_items)
    at_old, at_new = (np.argmax(found == i, axis=1) for i in (old, new))
    np.testing.assert_allclose(dots[np.arange(6), at_old], dots[np.arange(6), at_new], atol=1e-4)
    with TestClient(create_app(rec)) as client:
        body = client.post(
            "/predict",
            json={"pairs": [{"user_id": int(users[0]), "item_id": i} for i in (original, 70_001)]},
        ).json()
        first, second = (pair["predictions"] for pair in body["predictions"])
        assert first == pytest.approx(second, rel=1e-5)
        similar = client.get("/items/70001/similar", params={"k": 1}).json()
        assert similar["items"][0]["item_id"] == original


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="title"), r"new\.csv:1: field 'title': missing column"),
        (lambda df: df.assign(title=["  "], genres=[""]), r"new\.csv:2: .*empty text"),
        (lambda df: df.assign(item_id=[1]), r"new\.csv:2: field 'item_id': item id 1 already"),
        (lambda df: pd.concat([df, df]), r"new\.csv:3: field 'item_id': item id 30001 repeats"),
        (lambda df: df.assign(item_id=["x7"]), r"new\.csv:2: .*'x7' is not an integer"),
    ],
    ids=["missing-text-column", "empty-text", "existing-id", "repeated-id", "bad-id"],
)
def test_bad_new_items_are_refused_and_change_nothing(
    run_copy: Path, tmp_path: Path, change: Any, message: str
) -> None:
    csv = tmp_path / "new.csv"
    change(clone_of(run_copy, 1, 30_001)).to_csv(csv, index=False)
    files = ["model.json", "data/ids.json", "data/items.parquet", "features/items.safetensors"]
    before = {f: (run_copy / f).read_bytes() for f in files}
    with pytest.raises(DataError, match=message):
        add_items_file(run_copy, csv, progress=False)
    assert {f: (run_copy / f).read_bytes() for f in files} == before
    with FileLock(run_copy / LOCK, timeout=0):  # free: the failed add-items let it go
        pass


def test_a_second_add_items_on_the_same_run_is_refused(run_copy: Path) -> None:
    files = ["model.json", "data/ids.json"]
    before = {f: (run_copy / f).read_bytes() for f in files}
    with (
        FileLock(run_copy / LOCK, timeout=0),
        pytest.raises(RunError, match="another add-items is running"),
    ):
        add_items(run_copy, clone_of(run_copy, 1, 30_002), progress=False)
    assert {f: (run_copy / f).read_bytes() for f in files} == before


def test_a_failed_write_leaves_the_run_as_it_was(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, obj: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("hydrarec.run.catalogue.write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        add_items(run_copy, clone_of(run_copy, 1, 40_001))
    assert Recommender.load(run_copy).n_items == 60
    assert not list(run_copy.rglob("*.tmp"))


def test_a_saved_item_index_takes_the_new_items(run_copy: Path) -> None:
    build_index(run_copy, "exact")
    add_items(run_copy, clone_of(run_copy, 1, 50_001), progress=False)
    found = saved_index(RunDir(run_copy), "exact")
    assert found is not None
    index, source = found
    assert len(index) == source["n_items"] == 61
    rec = Recommender.load(run_copy)
    uv = rec.user_vectors(np.arange(8))  # the index answers as exact search over 61 items
    got, _ = index.search(uv, k=5)
    np.testing.assert_array_equal(got, torch.topk(uv @ rec.item_vectors.T, 5).indices.numpy())


def test_a_run_without_text_takes_items_by_their_features(tiny_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "tiny"))  # the shared run stays untouched
    new = clone_of(run, 1, 60_001).drop(columns="title")  # no text model: no text column needed
    add_items(run, new, progress=False)
    rec = Recommender.load(run)
    assert rec.run.items.text is None and rec.n_items == 41
    preds = rec.predict([rec.run.user_ids.raw_ids[0]], [60_001])
    assert all(np.isfinite(p).all() for p in preds.values())
