"""``hydrarec update`` (issue 25) on the tiny run: a new run that knows the new users and items,
keeps the old ids where they were, extends every history in time order, loads, serves, and
leaves the run it started from as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from tests.integration.test_cli import fails, invoke
from tests.integration.tiny import tiny_config

from hydrarec import update
from hydrarec.errors import ConfigError, DataError, Where
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.io.progress import Progress
from hydrarec.online import Event, open_store
from hydrarec.online.new_interactions import check_interactions
from hydrarec.online.update import _update_config, grown_model
from hydrarec.online.update_data import feedback_columns, replay_data
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.evaluate import evaluate
from hydrarec.run.rundir import load_run
from hydrarec.run.train import train
from hydrarec.serving import create_app

NEW_USER, NEW_ITEM = 0, 0  # ids the tiny run lacks, sorted before its own (1, 2, ...)
QUIET = Progress(enabled=False)


def fingerprint(run: Path) -> dict[str, str]:
    """Every file of ``run`` (its name) -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def new_interactions(run: Path, n: int = 120) -> pd.DataFrame:
    """``n`` interactions after the run's last one, in shuffled file order: known users and
    items, plus a new user (who has only new interactions) and a new item."""
    loaded = load_run(run)
    rng = np.random.default_rng(0)
    last = int(loaded.interactions["order"].max())
    frame = pd.DataFrame(
        {
            "user_id": rng.choice(loaded.user_ids.raw_ids, n),
            "item_id": rng.choice(loaded.item_ids.raw_ids, n),
            "timestamp": last + 10 + rng.permutation(n) * 10,  # file order is not time order
            "rating": rng.integers(1, 6, n).astype(float),
        }
    )
    early = frame["timestamp"] < last + 10 + 10 * (n // 2)  # the new ids train, not only validate
    frame.loc[frame.index[early][:4], "user_id"] = NEW_USER
    frame.loc[frame.index[early][4:8], "item_id"] = NEW_ITEM
    return frame


@dataclass
class Updated:
    run: Path
    out: Path
    new: pd.DataFrame
    before: dict[str, str]  # the run's fingerprint before the update


@pytest.fixture(scope="module")
def updated(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Updated:
    root = tmp_path_factory.mktemp("update")
    new = new_interactions(tiny_run)
    new.to_csv(root / "new.csv", index=False)
    before = fingerprint(tiny_run)
    out = update(tiny_run, root / "run2", interactions=root / "new.csv", progress=QUIET)
    return Updated(tiny_run, out, new, before)


def test_the_run_is_not_modified(updated: Updated) -> None:
    assert fingerprint(updated.run) == updated.before


def test_old_ids_keep_their_index_and_new_ids_get_their_own(updated: Updated) -> None:
    old = FeaturePipeline.load(updated.run / "features")
    grown = FeaturePipeline.load(updated.out / "features")
    for kind, new_id in (("user", NEW_USER), ("item", NEW_ITEM)):
        before, after = getattr(old, f"{kind}_").ids, getattr(grown, f"{kind}_").ids
        known = before.values_.to_numpy()
        assert after.transform(known).tolist() == before.transform(known).tolist()
        assert before.transform([new_id]).tolist() == [1]  # out of vocabulary in the run
        assert after.transform([new_id]).tolist()[0] >= before.size  # a row of its own, after
    ids = json.loads((updated.out / "data" / "ids.json").read_text())
    old_ids = json.loads((updated.run / "data" / "ids.json").read_text())
    assert ids["users"][: len(old_ids["users"])] == old_ids["users"]  # catalogue order kept
    assert ids["users"][len(old_ids["users"]) :] == [NEW_USER]
    assert ids["items"][len(old_ids["items"]) :] == [NEW_ITEM]
    meta = json.loads((updated.out / "model.json").read_text())
    assert meta["n_items"] == len(old_ids["items"]) + 1
    assert meta["user_spec"]["n_ids"] == grown.user_.ids.size


def test_the_warm_start_is_the_runs_weights_with_oov_rows_for_new_ids(updated: Updated) -> None:
    loaded = load_run(updated.run)
    cfg = _update_config(loaded.config, 1, None)
    checked = check_interactions(
        updated.new,
        Where("new"),
        feedback_columns(cfg),
        loaded.user_ids.raw_ids,
        loaded.item_ids.raw_ids,
    )
    data, _ = replay_data(cfg, loaded, checked, Where("new"), 1.0)
    start = grown_model(loaded, cfg, data).state_dict()
    for name, table in loaded.model.state_dict().items():
        if name.endswith("features.ids.weight"):
            n = len(table)
            assert len(start[name]) > n
            assert torch.equal(start[name][:n], table)  # old rows: the trained ones
            assert torch.equal(start[name][n:], table[1].expand(len(start[name]) - n, -1))
        else:
            assert torch.equal(start[name], table), name


def test_history_is_the_runs_then_the_new_in_time_order(updated: Updated) -> None:
    old, new = load_run(updated.run), load_run(updated.out)
    history_old = old.known(("train", "valid", "test"))
    history_new = new.known(("train", "valid", "test"))
    rows = updated.new.sort_values("timestamp", kind="stable")
    for user in (1, 2, NEW_USER):
        mine = rows[rows["user_id"] == user]["item_id"].tolist()
        u_new = int(new.user_ids.index([user])[0])
        before = []
        if user in old.user_ids:
            u_old = int(old.user_ids.index([user])[0])
            before = old.item_ids.raw(
                history_old.items[history_old.indptr[u_old] : history_old.indptr[u_old + 1]]
            ).tolist()
        after = new.item_ids.raw(
            history_new.items[history_new.indptr[u_new] : history_new.indptr[u_new + 1]]
        ).tolist()
        assert after == before + mine, user


def test_the_new_run_is_complete_and_validated_on_the_newest(updated: Updated) -> None:
    metrics = json.loads((updated.out / "metrics.json").read_text())
    assert "retrieval/ndcg@10" in metrics["valid"] and metrics["train"]["epochs"] >= 1
    facts = json.loads((updated.out / "update.json").read_text())
    assert facts["new_interactions"] == 120 and facts["valid_interactions"] == 12
    assert facts["new_users"] == 1 and facts["new_items"] == 1
    assert facts["replay_per_epoch"] == facts["new_per_epoch"]  # replay 1: as many old as new
    with pytest.raises(ConfigError, match="an updated run: it is validated on its newest"):
        evaluate(updated.out, "test")
    assert (
        evaluate(updated.out, "valid")["retrieval/ndcg@10"] == metrics["valid"]["retrieval/ndcg@10"]
    )
    valid = load_run(updated.out).interactions
    valid = valid[valid["split"] == "valid"]
    assert valid["order"].min() >= updated.new["timestamp"].nlargest(12).min()  # the newest 12


def test_new_user_and_new_item_are_recommended(updated: Updated) -> None:
    rec = Recommender.load(updated.out)
    ids, scores = rec.recommend([NEW_USER], k=5)
    assert np.isfinite(scores).all()
    seen = set(updated.new[updated.new["user_id"] == NEW_USER]["item_id"])
    assert not seen & set(ids[0].tolist())  # excluded as seen: the history is the new one
    ids, _ = rec.recommend([1], k=1, allow=[NEW_ITEM], exclude_seen=False)
    assert ids[0].tolist() == [NEW_ITEM]


def test_the_new_run_is_served(updated: Updated) -> None:
    with TestClient(create_app(updated.out)) as client:
        answer = client.post("/recommend", json={"user_id": NEW_USER, "k": 3})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["items"]) == 3


def test_update_from_an_event_log_and_of_a_windows_run(tmp_path: Path) -> None:
    cfg = tiny_config(examples="windows", window_stride=4, epochs=1)
    train(cfg, tmp_path / "run", progress=QUIET)
    new = new_interactions(tmp_path / "run", n=40)
    store = open_store(tmp_path / "events.db")
    store.append(
        [
            [
                Event(
                    str(r.user_id),
                    str(r.item_id),
                    float(r.timestamp),
                    feedback={"rating": r.rating},
                )
                for r in new.itertuples()
            ]
        ]
    )
    store.close()
    out = update(
        tmp_path / "run", tmp_path / "run2", events=tmp_path / "events.db", epochs=2, progress=QUIET
    )
    facts = json.loads((out / "update.json").read_text())
    assert facts["new_interactions"] == 40 and facts["new_users"] == 1
    assert facts["events_received_through"] > 1.7e9  # the arrival time of the last event
    assert 0 < facts["new_per_epoch"] < 40  # windows: several new interactions share one
    assert Recommender.load(out).recommend([NEW_USER], k=2).ids.shape == (1, 2)

    # served on the log it was updated from, the new run reads only the events that came after:
    # the others are in its history already, and would otherwise reach the encoder twice
    log = str(tmp_path / "events.db")
    user = int(new["user_id"].iloc[-1])
    with TestClient(create_app(out, events=log)) as client:
        assert _events_used(client, user) == 0
        item = int(new["item_id"].iloc[0])
        client.post("/events", json={"events": [{"user_id": user, "item_id": item}]})
        assert _events_used(client, user) == 1
    # on another log, and for the run it started from, every logged event counts
    with TestClient(create_app(tmp_path / "run", events=log)) as client:
        assert _events_used(client, user) == int((new["user_id"] == user).sum()) + 1
    other = tmp_path / "other.db"
    shutil.copy(log, other)
    with TestClient(create_app(out, events=str(other))) as client:
        assert _events_used(client, user) == int((new["user_id"] == user).sum()) + 1


def _events_used(client: TestClient, user: int) -> int:
    r = client.post("/recommend", json={"user_id": user, "k": 1})
    assert r.status_code == 200, r.text
    return int(r.json()["events"]["used"])


@pytest.fixture
def files(tiny_run: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    good = tmp_path / "new.csv"
    new_interactions(tiny_run, n=10).to_csv(good, index=False)
    (tmp_path / "empty.csv").write_text("")
    pd.DataFrame({"user_id": [1], "item": [2]}).to_csv(tmp_path / "noitem.csv", index=False)
    (tmp_path / "nan.csv").write_text("user_id,item_id\n1,2\n,3\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    yield {"run": str(tiny_run), "good": str(good), "tmp": tmp_path}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.csv", "--out", "{tmp}/o"], "missing.csv: file not found"),
        (["{tmp}/empty.csv", "--out", "{tmp}/o"], "empty.csv: the file is empty"),
        (["{tmp}/noitem.csv", "--out", "{tmp}/o"], "noitem.csv:1: field 'item_id': missing"),
        (["{tmp}/nan.csv", "--out", "{tmp}/o"], "nan.csv:3: field 'user_id': missing user id"),
        (["{good}", "--out", "{run}"], "is the run being updated"),
        (["{good}", "--out", "{tmp}/full"], "is not empty (notes.txt) and not a hydrarec run"),
    ],
)
def test_cli_errors_name_the_input(
    files: dict[str, Any], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    filled = [a.format(**files) for a in args]
    err = fails(capsys, "update", files["run"], "--interactions", *filled)
    assert message in " ".join(err.split()), err
    assert not (files["tmp"] / "o").exists()  # nothing written


def test_cli_needs_one_source_and_a_run(
    files: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = files["tmp"]
    for extra in ([], ["--interactions", files["good"], "--events", f"{tmp}/e.db"]):
        err = fails(capsys, "update", files["run"], "--out", f"{tmp}/o", *extra)
        assert "--interactions FILE or --events LOG (exactly one)" in " ".join(err.split())
    err = fails(capsys, "update", str(tmp), "--interactions", files["good"], "--out", f"{tmp}/o")
    assert "is not a hydrarec run" in err
    err = fails(
        capsys, "update", files["run"], "--interactions", files["good"], "--out", files["run"]
    )
    assert "is the run being updated" in " ".join(err.split())


def test_cli_writes_a_run(files: dict[str, Any]) -> None:
    out = files["tmp"] / "run2"
    text = invoke(
        "update",
        files["run"],
        "--interactions",
        files["good"],
        "--out",
        str(out),
        "--epochs",
        "1",
        "-q",
    )
    assert "10 new interactions (1 newest for validation)" in " ".join(text.split())
    assert (out / "index").is_dir() and (out / "metrics.json").is_file()
    err_out = files["tmp"] / "again"
    invoke("update", str(out), "--interactions", files["good"], "--out", str(err_out), "-q")


def test_new_items_of_a_text_run_come_with_their_text(tmp_path: Path) -> None:
    from tests.integration.test_cold_start import clone_of, text_config

    train(text_config(tmp_path / "cache", train={"epochs": 1}), tmp_path / "run", progress=QUIET)
    new = new_interactions(tmp_path / "run", n=30).drop(columns="rating")
    new.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=f"item {NEW_ITEM} is new to the run.* --items FILE"):
        update(tmp_path / "run", tmp_path / "bad", interactions=tmp_path / "new.csv")
    twin = int(load_run(tmp_path / "run").item_ids.raw_ids[3])
    clone_of(tmp_path / "run", twin, NEW_ITEM).to_csv(tmp_path / "items.csv", index=False)
    out = update(tmp_path / "run", tmp_path / "run2", interactions=tmp_path / "new.csv",
                 items=tmp_path / "items.csv", epochs=1, progress=QUIET)  # fmt: skip
    loaded = load_run(out)
    new_row, twin_row = loaded.item_ids.index([NEW_ITEM, twin])
    assert loaded.items.text is not None
    torch.testing.assert_close(loaded.items.text[new_row], loaded.items.text[twin_row])
    assert loaded.items.ids[new_row] >= 2  # trained on: an id row of its own, not OOV


def test_without_feedback_the_update_is_validated_by_retrieval(tmp_path: Path) -> None:
    train(tiny_config(epochs=1, monitor="rating/rmse"), tmp_path / "run", progress=QUIET)
    new = new_interactions(tmp_path / "run", n=30).drop(columns="rating")  # events, no rating
    new.to_parquet(tmp_path / "new.parquet")
    out = update(tmp_path / "run", tmp_path / "run2", interactions=tmp_path / "new.parquet",
                 epochs=2, progress=QUIET)  # fmt: skip
    # rating/rmse has no label on the newest rows: the epoch is chosen by retrieval instead
    assert load_run(out).config.train.monitor == "retrieval/ndcg@10"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert all("rating/rmse" not in h["valid"] for h in history)  # no label, no metric
    assert json.loads((out / "update.json").read_text())["best_epoch"] >= 1
