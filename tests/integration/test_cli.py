"""Every CLI command on a tiny run, and the errors a user sees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import tomllib
from tests.integration.tiny import tiny_raw
from typer.testing import CliRunner

from hydrarec import __version__
from hydrarec.cli import app, main

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run through ``main`` (as the console script does) and expect a clean error, exit 2."""
    import sys

    old = sys.argv
    sys.argv = ["hydrarec", *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = old
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


def write_toml(path: Path, raw: dict) -> Path:
    from hydrarec.config import config_from_dict, dump_config

    path.write_text(dump_config(config_from_dict(raw)))
    return path


def test_help_and_version() -> None:
    assert __version__ in invoke("--version")
    out = invoke("--help")
    for command in (
        "train",
        "evaluate",
        "predict",
        "recommend",
        "datasets",
        "demo",
        "serve",
        "report",
    ):
        assert command in out


def test_datasets_info_movielens_100k() -> None:
    assert os.environ.get("HYDRAREC_DATA_DIR"), "set HYDRAREC_DATA_DIR to the shared data"
    out = invoke("datasets", "info", "movielens-100k")
    assert "943" in out and "1,682" in out and "100,000" in out
    assert "rating" in out
    assert "movielens-100k" in invoke("datasets", "list")


def test_train_with_set_then_evaluate(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "c.toml", tiny_raw(epochs=2))
    out = invoke(
        "train",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        "--set",
        "train.epochs=1",
        "--set",
        "tasks.rating.weight=0.5",
    )
    assert "retrieval/ndcg@10" in out and "rating/rmse" in out
    resolved = tomllib.loads((tmp_path / "run/config.toml").read_text())
    assert resolved["train"]["epochs"] == 1
    assert [t["weight"] for t in resolved["tasks"] if t["name"] == "rating"] == [0.5]
    out = invoke("evaluate", str(tmp_path / "run"), "--split", "valid")
    assert "like/auc" in out and "genres/loss" in out
    # --with-known (issue 19): the user's earlier items compete too, stored beside the split
    out = invoke("evaluate", str(tmp_path / "run"), "--split", "test", "--with-known")
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert "test_with_known" in out and set(metrics) >= {"test", "test_with_known"}
    known, plain = metrics["test_with_known"], metrics["test"]
    assert known["retrieval/ndcg@10"] != plain["retrieval/ndcg@10"]  # other ranks
    assert known["rating/rmse"] == plain["rating/rmse"]  # pointwise tasks rank nothing


def test_train_with_refit_says_what_each_column_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_toml(tmp_path / "c.toml", tiny_raw(epochs=2))
    run = tmp_path / "run"
    out = invoke("train", "-c", str(cfg), "-o", str(run), "-q", "--set", "train.refit=true")
    assert "refit on train + valid" in " ".join(out.split())
    assert (run / "selection/model.safetensors").is_file()
    err = fails(capsys, "evaluate", str(run), "--split", "valid")
    assert "no 'valid' interactions" in err and "train.refit" in err


def test_train_no_test_leaves_test_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_toml(tmp_path / "c.toml", tiny_raw(epochs=1))
    run = tmp_path / "run"
    out = invoke("train", "-c", str(cfg), "-o", str(run), "-q", "--no-test")
    metrics = json.loads((run / "metrics.json").read_text())
    assert "valid" in metrics and "test" not in metrics
    table = out.split("run written to")[0]  # the run's path may hold "test"
    assert "valid" in table and "test" not in table
    # a refit exists to score test: asking for one without test is refused, not ignored
    err = fails(
        capsys,
        "train",
        "-c",
        str(cfg),
        "-o",
        str(tmp_path / "r2"),
        "-q",
        "--no-test",
        "--set",
        "train.refit=true",
    )
    assert "train.refit" in err and "test" in err


def test_predict_writes_every_task(tiny_run: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 5, 7]}).to_csv(pairs, index=False)
    invoke("predict", str(tiny_run), "--pairs", str(pairs), "--out", str(tmp_path / "s.csv"))
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns) == ["user_id", "item_id", "retrieval", "rating", "like"]
    assert scores["like"].between(0, 1).all()
    assert scores["rating"].between(1, 5).all()


def test_recommend_one_user_many_and_all(tiny_run: Path, tmp_path: Path) -> None:
    out = invoke("recommend", str(tiny_run), "--user", "3", "-k", "5")
    assert "rank" in out
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": [1, 2]}).to_csv(users, index=False)
    invoke(
        "recommend",
        str(tiny_run),
        "--users",
        str(users),
        "-k",
        "4",
        "--out",
        str(tmp_path / "r.csv"),
    )
    recs = pd.read_csv(tmp_path / "r.csv")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert recs.groupby("user_id")["rank"].apply(list).to_dict() == {
        1: [1, 2, 3, 4],
        2: [1, 2, 3, 4],
    }
    invoke(
        "recommend", str(tiny_run), "--all-users", "-k", "3", "--out", str(tmp_path / "all.parquet")
    )
    everyone = pd.read_parquet(tmp_path / "all.parquet")
    # a user gets min(k, unseen items) rows; a user who has seen the whole catalogue gets none
    seen = pd.read_parquet(tiny_run / "data/interactions.parquet").groupby("user_idx").size()
    unseen = (40 - seen).clip(upper=3)
    assert len(everyone) == int(unseen.sum())
    assert everyone["user_id"].nunique() == int((unseen > 0).sum())


def test_errors_are_clear(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_toml(tmp_path / "c.toml", tiny_raw(epochs=1))
    assert "unknown key 'lrr'" in fails(
        capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--set", "train.lrr=1"
    )
    assert "not a hydrarec run" in fails(capsys, "evaluate", str(tmp_path))
    assert "unknown user id(s): 999999" in fails(
        capsys, "recommend", str(tiny_run), "--user", "999999"
    )
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user_id": [1], "item_id": [424242]}).to_csv(pairs, index=False)
    assert "unknown item id(s): 424242" in fails(
        capsys, "predict", str(tiny_run), "--pairs", str(pairs), "--out", str(tmp_path / "o.csv")
    )
    for raw in ("042", "abc"):  # the id rule of the Python API and HTTP (issue 21)
        assert f"unknown user id(s): '{raw}'" in fails(
            capsys, "recommend", str(tiny_run), "--user", raw
        )
    pairs.write_text("user_id,item_id\n1,007\n")
    assert "unknown item id(s): '007'" in fails(
        capsys, "predict", str(tiny_run), "--pairs", str(pairs), "--out", str(tmp_path / "o.csv")
    )
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"user": [1]}).to_csv(bad, index=False)
    assert "missing column 'user_id'" in fails(
        capsys, "predict", str(tiny_run), "--pairs", str(bad), "--out", str(tmp_path / "o.csv")
    )
