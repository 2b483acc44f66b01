"""load_tabular on small generated CSV and Parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydrarec.config import DataConfig, TabularConfig
from hydrarec.data.registry import load_dataset
from hydrarec.data.schema import Kind
from hydrarec.data.tabular import load_tabular
from hydrarec.errors import ConfigError, DataError

EVENTS = (
    "uid,iid,when,stars,clicked,extra\n"
    "u1,10,2021-01-01T00:00:00Z,4.5,1,x\n"
    "u1,11,2021-01-01T00:00:10Z,2,0,y\n"
    "u2,10,2021-01-02T00:00:00+01:00,5,1,z\n"
)
ITEMS = 'iid,genres,price,name,brand\n10,a|b,9.5,"Big, red",acme\n11,,,,\n12,c,1,Blue,zeta\n'
USERS = "uid,country\nu1,NO\nu2,SE\nu3,DK\n"
CFG = {
    "interactions": "events.csv",
    "users": "users.csv",
    "items": "items.csv",
    "user_id": "uid",
    "item_id": "iid",
    "timestamp": "when",
    "labels": {"stars": "regression", "clicked": "binary"},
    "user_features": {"country": "categorical"},
    "item_features": {
        "genres": "multi_hot",
        "price": "numeric",
        "name": "text",
        "brand": "categorical",
    },
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name, text in (("events.csv", EVENTS), ("items.csv", ITEMS), ("users.csv", USERS)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_columns_renamed_and_typed(folder: Path) -> None:
    ds = load_tabular(TabularConfig(**CFG), folder)
    inter = ds.interactions
    assert list(inter.columns) == [
        "user_id",
        "item_id",
        "timestamp",
        "stars",
        "clicked",
        "user_idx",
        "item_idx",
    ]  # "extra" is not declared: dropped
    assert inter["user_id"].tolist() == ["u1", "u1", "u2"]
    assert inter["item_id"].tolist() == [10, 11, 10]  # plain integers stay ints
    # 2021-01-01T00:00:00Z = 1609459200; +01:00 is one hour earlier in UTC
    assert inter["timestamp"].tolist() == [1609459200, 1609459210, 1609459200 + 86400 - 3600]
    assert inter["stars"].dtype == np.float32 and inter["clicked"].tolist() == [1.0, 0.0, 1.0]
    assert ds.given_splits == {}


def test_side_features_of_each_kind(folder: Path) -> None:
    ds = load_tabular(CFG, folder)
    items = ds.items.set_index("item_id")
    assert items.loc[10, "genres"] == ["a", "b"] and items.loc[11, "genres"] == []
    assert items.loc[10, "price"] == 9.5 and np.isnan(items.loc[11, "price"])
    assert items.loc[10, "name"] == "Big, red" and items.loc[11, "name"] == ""
    assert ds.n_items == 3 and ds.n_users == 3  # catalogue rows without interactions kept
    kinds = {c.name: c.kind for c in ds.schema.items}
    assert kinds == {
        "item_id": Kind.ID,
        "genres": Kind.MULTI_HOT,
        "price": Kind.NUMERIC,
        "name": Kind.TEXT,
        "brand": Kind.CATEGORICAL,
    }
    assert [(c.name, c.kind) for c in ds.schema.interactions] == [
        ("timestamp", Kind.TIMESTAMP),
        ("stars", Kind.REGRESSION),
        ("clicked", Kind.BINARY),
    ]
    assert ds.users.set_index("user_id").loc["u3", "country"] == "DK"


def test_parquet_gives_the_same_dataset(folder: Path) -> None:
    for name in ("events", "items", "users"):
        pd.read_csv(folder / f"{name}.csv", dtype=str).to_parquet(folder / f"{name}.parquet")
    cfg = {
        **CFG,
        "interactions": "events.parquet",
        "users": "users.parquet",
        "items": "items.parquet",
    }
    a, b = load_tabular(CFG, folder), load_tabular(cfg, folder)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert a.items["genres"].tolist() == b.items["genres"].tolist()


def test_explicit_train_valid_test_files(tmp_path: Path) -> None:
    parts = {"train": "1,1,5\n1,2,3\n2,1,4\n", "valid": "2,2,1\n", "test": "1,3,2\n2,3,5\n"}
    for part, rows in parts.items():
        (tmp_path / f"{part}.csv").write_text("user_id,item_id,timestamp\n" + rows)
    ds = load_tabular({p: f"{p}.csv" for p in parts}, tmp_path)
    files = ds.given_splits["files"]
    assert {k: v.tolist() for k, v in files.items()} == {
        "train": [0, 1, 2],
        "valid": [3],
        "test": [4, 5],
    }
    assert ds.interactions["item_id"].tolist() == [1, 2, 1, 2, 3, 3]


def test_duplicates_across_files_keep_the_last_and_remap_parts(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("user_id,item_id,timestamp,r\n1,1,5,1\n1,2,6,2\n")
    (tmp_path / "test.csv").write_text("user_id,item_id,timestamp,r\n1,1,5,4\n")
    cfg = {"train": "train.csv", "test": "test.csv", "labels": {"r": "regression"}}
    ds = load_tabular(cfg, tmp_path)
    assert ds.interactions["r"].tolist() == [2.0, 4.0]
    files = ds.given_splits["files"]
    assert (files["train"].tolist(), files["test"].tolist()) == ([0], [1])
    with pytest.raises(DataError, match=r"first at .*train.csv:2") as e:
        load_tabular(cfg, tmp_path, duplicates="error")
    assert e.value.file is not None and e.value.file.endswith("test.csv") and e.value.line == 2


def test_ids_with_leading_zeros_stay_strings(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("user_id,item_id\n007,1\n7,2\n")
    ds = load_tabular({"interactions": "r.csv"}, tmp_path)
    assert ds.interactions["user_id"].tolist() == ["007", "7"] and ds.n_users == 2
    assert ds.interactions["item_id"].tolist() == [1, 2]


def test_integer_and_iso_timestamps_agree(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,1,86400\n")
    (tmp_path / "b.csv").write_text("user_id,item_id,timestamp\n1,1,1970-01-02\n")
    a = load_tabular({"interactions": "a.csv"}, tmp_path).interactions["timestamp"]
    b = load_tabular({"interactions": "b.csv"}, tmp_path).interactions["timestamp"]
    assert a.tolist() == b.tolist() == [86400] and b.dtype == np.int64


def test_default_time_column_may_be_absent_but_a_configured_one_may_not(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("user_id,item_id\n1,1\n")
    ds = load_tabular({"interactions": "r.csv"}, tmp_path)
    assert "timestamp" not in ds.interactions.columns and ds.schema.interactions == []
    with pytest.raises(DataError, match="missing required column 'timestamp'"):
        load_tabular({"interactions": "r.csv", "timestamp": "timestamp"}, tmp_path)


def test_separator_encoding_and_gzip(tmp_path: Path) -> None:
    import gzip

    text = "user_id;item_id;title\n1;1;Café\n".encode("latin-1")
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(text))
    (tmp_path / "items.csv").write_bytes("item_id;title\n1;Café\n".encode("latin-1"))
    cfg = {
        "interactions": "r.csv.gz",
        "items": "items.csv",
        "sep": ";",
        "encoding": "latin-1",
        "item_features": {"title": "text"},
    }
    ds = load_tabular(cfg, tmp_path)
    assert ds.items["title"].tolist() == ["Café"]


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either 'interactions' or 'train'"):
        load_tabular({"interactions": "a.csv", "train": "b.csv", "test": "c.csv"}, tmp_path)
    with pytest.raises(ConfigError, match="needs 'interactions', or 'train' and 'test'"):
        load_tabular({"train": "b.csv"}, tmp_path)
    with pytest.raises(ConfigError, match="invalid tabular data config"):
        load_tabular({"interactions": "a.csv", "no_such_key": 1}, tmp_path)


def test_load_dataset_reads_tabular_relative_to_path(folder: Path) -> None:
    cfg = DataConfig(
        dataset="tabular", path=str(folder), tabular=TabularConfig(**CFG), min_user_interactions=2
    )
    ds = load_dataset(cfg)
    assert ds.interactions["user_id"].tolist() == ["u1", "u1"]  # u2 has one interaction
