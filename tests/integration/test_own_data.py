"""A new user's path on their own data (issue 22): ``hydrarec init`` -> ``train`` -> ``evaluate``
-> ``recommend --split test``, and their own metric code reproduces ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
from typer.testing import CliRunner

from hydrarec.cli import app

runner = CliRunner()
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def write_data(folder: Path, n_users: int = 30, n_items: int = 24) -> tuple[Path, Path]:
    """Interactions with ISO time stamps, a rating and a click; items with a title (text),
    genres (multi-hot) and a year. Users like one genre most, so there is something to learn."""
    rng = np.random.default_rng(7)
    genre_of = np.arange(n_items) % len(GENRES)
    rows = []
    for u in range(n_users):
        liked = genre_of == u % len(GENRES)
        p = np.where(liked, 4.0, 1.0) / np.where(liked, 4.0, 1.0).sum()
        for t, i in enumerate(rng.choice(n_items, size=7, replace=False, p=p)):
            stamp = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=int(t * 24 + u))
            rating = int(rng.integers(3, 6) if liked[i] else rng.integers(1, 4))
            rows.append((f"u{u}", f"i{i}", stamp.isoformat(), rating, int(rating >= 4)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "time", "rating", "click"])
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"A {GENRES[g].lower()} film, number {i}" for i, g in enumerate(genre_of)],
            "genres": [f"{GENRES[g]}|{GENRES[(g + 1) % 5]}" for g in genre_of],
            "year": 1990 + np.arange(n_items),
        }
    )
    inter.to_csv(folder / "interactions.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    return folder / "interactions.csv", folder / "items.csv"


def hand_metrics(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> dict[str, float]:
    """HR@k and NDCG@k written from their definitions: a test item's 0-based rank is its place in
    the user's list less the user's other test items above it; missing from the list: no hit."""
    hits, gains = [], []
    for user, targets in test.groupby("user_id")["item_id"]:
        listed = recs[recs["user_id"] == user].sort_values("rank")["item_id"].tolist()
        for target in targets:
            rank = None
            if target in listed:
                above = listed[: listed.index(target)]
                rank = len(above) - sum(1 for other in targets if other in above)
            hit = rank is not None and rank < k
            hits.append(1.0 if hit else 0.0)
            gains.append(1.0 / np.log2(rank + 2.0) if hit and rank is not None else 0.0)
    return {f"hr@{k}": float(np.mean(hits)), f"ndcg@{k}": float(np.mean(gains))}


def test_init_train_evaluate_recommend_reproduces_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYDRAREC_CACHE_DIR", str(tmp_path / "cache"))  # text cache of this test
    inter_csv, items_csv = write_data(tmp_path)
    config = tmp_path / "config.toml"
    shown = invoke("init", str(inter_csv), "--items", str(items_csv), "--out", str(config))
    for said in ("time", "title", "text", "genres", "multi_hot", "rating", "regression"):
        assert said in shown
    raw = tomllib.loads(config.read_text())
    assert raw["model"]["text"]["enabled"] is True
    assert raw["model"]["sequence"]["kind"] == "transformer"
    assert [t["kind"] for t in raw["tasks"]] == ["retrieval", "rating", "binary", "reconstruction"]

    run = tmp_path / "run"
    invoke("train", "-c", str(config), "--out", str(run), "-q")  # the config as written
    invoke("evaluate", str(run), "--split", "test", "-q")
    recs_file = tmp_path / "recs.parquet"
    invoke("recommend", str(run), "--split", "test", "--all-users", "-k", "10",
           "--out", str(recs_file))  # fmt: skip
    recs = pd.read_parquet(recs_file)

    # the user's own test set: each user's last interaction by time (leave-last-out)
    inter = pd.read_csv(inter_csv)
    test = inter.sort_values("time", kind="stable").groupby("user_id").tail(1)
    assert set(recs["user_id"]) == set(test["user_id"])
    seen_before = inter.drop(test.index).groupby("user_id")["item_id"].apply(set)
    for user, group in recs.groupby("user_id"):
        assert not set(group["item_id"]) & seen_before[user]  # earlier items are left out
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    mine = hand_metrics(recs, test, 10)
    assert mine["hr@10"] == pytest.approx(metrics["retrieval/hr@10"], abs=1e-6)
    assert mine["ndcg@10"] == pytest.approx(metrics["retrieval/ndcg@10"], abs=1e-6)
    assert 0.0 < mine["hr@10"] < 1.0  # a list that can miss: the comparison means something
