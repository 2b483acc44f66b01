"""FeaturePipeline: fitted on train only, spec sizes, save / load round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydrarec.config import FeaturesConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import Column, Kind, Schema
from hydrarec.errors import ConfigError, DataError, RunError
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.encoders import NotFittedError
from hydrarec.features.pipeline import FeaturePipeline

SCHEMA = Schema(
    interactions=[
        Column("user_id", Kind.ID),
        Column("item_id", Kind.ID),
        Column("timestamp", Kind.TIMESTAMP),
        Column("rating", Kind.REGRESSION),
    ],
    users=[
        Column("user_id", Kind.ID),
        Column("age", Kind.NUMERIC),
        Column("gender", Kind.CATEGORICAL),
    ],
    items=[
        Column("item_id", Kind.ID),
        Column("genres", Kind.MULTI_HOT),
        Column("year", Kind.NUMERIC),
        Column("studio", Kind.CATEGORICAL),
        Column("title", Kind.TEXT),
    ],
)


def _dataset() -> Dataset:
    """Users u1, u2 in train; u3 only in test. Items i1..i3 in train; i4 only in test."""
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u1"],
            "item_id": ["i1", "i2", "i2", "i3", "i1", "i4"],
            "timestamp": [1, 2, 3, 4, 5, 6],
            "rating": [5.0, 3.0, 4.0, 1.0, 2.0, 4.0],
        }
    )
    users = pd.DataFrame(
        {"user_id": ["u1", "u2", "u3"], "age": [20.0, 40.0, 99.0], "gender": ["f", "m", "x"]}
    )
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "genres": [["drama"], ["comedy", "drama"], None, ["horror"]],
            "year": [1990.0, 2000.0, np.nan, 2020.0],
            "studio": ["A", "B", "A", "Z"],
            "title": ["one", "two", "three", "four"],
        }
    )
    return Dataset.build("toy", inter, SCHEMA, users=users, items=items)


TRAIN = np.array([0, 1, 2, 3])  # rows 4 (u3) and 5 (i4) are held out


def _fit(**kw: object) -> tuple[FeaturePipeline, Dataset]:
    ds = _dataset()
    return FeaturePipeline(FeaturesConfig(**kw)).fit(ds, TRAIN), ds


def test_ids_seen_only_outside_train_map_to_oov() -> None:
    p, ds = _fit()
    items = p.transform_items(ds.items)  # catalogue order i1, i2, i3, i4
    assert items.ids.tolist() == [2, 3, 4, 1]  # i4 appears only in test -> 1
    assert p.transform_users(ds.users).ids.tolist() == [2, 3, 1]  # u3 only in test -> 1


def test_side_features_fitted_on_train_entities_only() -> None:
    p, ds = _fit()
    items = p.transform_items(ds.items)
    # studio: train items have A, B -> 2, 3; i4's Z was never seen in train -> 1
    assert items.categorical["studio"].tolist() == [2, 3, 2, 1]
    # genres of train items: comedy 2, drama 3; horror (i4 only) -> 1
    assert items.multi_hot["genres"].tolist() == [[3, 0], [2, 3], [0, 0], [1, 0]]
    # year over train items 1990, 2000 (i3 missing): mean 1995, std 5 -> -1, 1, 0 (missing), 5
    assert items.numeric is not None
    assert items.numeric.dtype == torch.float32
    assert items.numeric[:, 0].tolist() == [-1.0, 1.0, 0.0, 5.0]
    users = p.transform_users(ds.users)
    # age over u1, u2 only: mean 30, std 10 (u3's 99 is not in the statistics)
    assert users.numeric is not None
    np.testing.assert_allclose(users.numeric[:, 0].numpy(), [-1.0, 1.0, 6.9], rtol=1e-6)
    assert users.categorical["gender"].tolist() == [2, 3, 1]
    assert "title" not in items.categorical and items.text is None  # text: the text encoder's


def test_spec_sizes() -> None:
    p, _ = _fit()
    item = p.item_spec()
    assert item.n_ids == 5  # i1, i2, i3 + padding + OOV
    assert item.categorical == {"studio": 4}
    assert item.multi_hot == {"genres": 4}
    assert (item.n_numeric, item.numeric_names) == (1, ("year",))
    user = p.user_spec()
    assert (user.n_ids, user.categorical, user.n_numeric) == (4, {"gender": 4}, 1)


def test_bucketize_adds_a_bucket_categorical_and_keeps_the_float() -> None:
    p, ds = _fit(numeric="bucketize", n_buckets=2)
    items = p.transform_items(ds.items)
    # train years 1990, 2000: one edge at 1995 -> 1990 -> 2, 2000 -> 3, missing -> 1, 2020 -> 3
    assert items.categorical["year_bucket"].tolist() == [2, 3, 1, 3]
    assert items.numeric is not None and items.numeric.shape == (4, 1)
    assert p.item_spec().categorical["year_bucket"] == 4


def test_explicit_columns_and_errors_name_the_field() -> None:
    p, ds = _fit(item=["studio"], user=[])
    items = p.transform_items(ds.items)
    assert list(items.categorical) == ["studio"] and items.numeric is None
    assert p.user_spec().n_numeric == 0
    with pytest.raises(ConfigError, match=r"features.item: no items column 'nope'"):
        _fit(item=["nope"])
    with pytest.raises(ConfigError, match=r"features.item: column 'title' is text"):
        _fit(item=["title"])


def test_transform_needs_the_columns_and_a_fit() -> None:
    p, ds = _fit()
    with pytest.raises(DataError, match="studio"):
        p.transform_items(ds.items.drop(columns=["studio"]))
    with pytest.raises(NotFittedError):
        FeaturePipeline(FeaturesConfig()).transform_items(ds.items)


@pytest.mark.parametrize(
    ("column", "value"),
    [("year", "recent"), ("year", [1990]), ("studio", {"name": "A"}), ("studio", ["A"])],
)
def test_a_value_of_the_wrong_type_is_a_data_error_naming_the_feature(
    column: str, value: object
) -> None:
    """Issue 21: a numeric feature's text was an error naming no feature, and a dict or a list
    for a categorical one a TypeError (an HTTP 500 from a cold user's features)."""
    p, ds = _fit()
    items = ds.items.copy()
    items[column] = items[column].astype(object)
    items.at[1, column] = value
    with pytest.raises(DataError, match=rf"^field '{column}': "):
        p.transform_items(items)
    if column != "year":  # a category that is a list or a dict is the loaders' to refuse
        return
    with pytest.raises(DataError, match=rf"^field '{column}': "):  # and when fitting
        FeaturePipeline(FeaturesConfig()).fit(
            Dataset.build(
                "toy",
                ds.interactions[["user_id", "item_id", "timestamp", "rating"]],
                SCHEMA,
                users=ds.users,
                items=items,
            ),
            TRAIN,
        )


def _assert_same(a: EntityFeatures, b: EntityFeatures) -> None:
    assert torch.equal(a.ids, b.ids)
    assert a.categorical.keys() == b.categorical.keys()
    assert all(torch.equal(a.categorical[k], b.categorical[k]) for k in a.categorical)
    assert a.multi_hot.keys() == b.multi_hot.keys()
    assert all(torch.equal(a.multi_hot[k], b.multi_hot[k]) for k in a.multi_hot)
    assert (a.numeric is None) == (b.numeric is None)
    if a.numeric is not None and b.numeric is not None:
        assert torch.equal(a.numeric, b.numeric)


@pytest.mark.parametrize("numeric", ["standardize", "bucketize"])
def test_save_load_round_trip_gives_identical_tensors(tmp_path: Path, numeric: str) -> None:
    p, ds = _fit(numeric=numeric, min_count=1, max_tokens=4)
    path = p.save(tmp_path / "features")
    assert path.name == "features.json"
    assert sorted(f.name for f in path.parent.iterdir()) == ["features.json"]  # no temp left
    json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    q = FeaturePipeline.load(tmp_path / "features")
    _assert_same(p.transform_items(ds.items), q.transform_items(ds.items))
    _assert_same(p.transform_users(ds.users), q.transform_users(ds.users))
    assert q.item_spec() == p.item_spec() and q.user_spec() == p.user_spec()
    assert q.config == p.config


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        FeaturePipeline.load(tmp_path)
    (tmp_path / "features.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(RunError, match="not a hydrarec feature state"):
        FeaturePipeline.load(tmp_path)


def test_new_items_transform_with_the_train_state() -> None:
    p, _ = _fit()
    new = pd.DataFrame(
        {
            "item_id": ["i9"],
            "genres": [["drama", "western"]],
            "year": [2005.0],
            "studio": ["B"],
            "title": ["nine"],
        }
    )
    out = p.transform_items(new)
    assert out.ids.tolist() == [1]
    assert out.multi_hot["genres"].tolist() == [[3, 1]]
    assert out.categorical["studio"].tolist() == [3]
    assert out.numeric is not None and math.isclose(out.numeric.item(), 2.0)
