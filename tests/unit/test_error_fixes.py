"""Errors for a missing or conflicting field show the TOML line that fixes it (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydrarec.config import SplitConfig, config_from_dict
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import Schema
from hydrarec.data.splits import make_split
from hydrarec.data.tabular import load_tabular
from hydrarec.errors import ConfigError, DataError


def dataset(given: dict[str, dict[str, np.ndarray]]) -> Dataset:
    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 6, 5]})
    return Dataset.build("d", inter, Schema(), given_splits=given)


def test_given_split_without_its_name_shows_the_line() -> None:
    files = {"files": {"train": np.array([0, 2]), "test": np.array([1])}}
    with pytest.raises(ConfigError, match=r'add under \[data.split\]: given = "files"$'):
        make_split(dataset(files), SplitConfig(kind="given"))
    folds = {name: files["files"] for name in ("u2", "u1")}
    with pytest.raises(ConfigError, match=r'given = "u1" \(or one of u2\)'):
        make_split(dataset(folds), SplitConfig(kind="given"))
    with pytest.raises(ConfigError, match=r'has no split .u9.*given = "u1"'):
        make_split(dataset(folds), SplitConfig(kind="given", given="u9"))
    with pytest.raises(ConfigError, match="ships none: use another kind"):
        make_split(dataset({}), SplitConfig(kind="given"))


def test_tabular_files_missing_or_conflicting(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1], "item_id": [2]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ConfigError, match=r'add under \[data.tabular\]: test = "test.csv"'):
        load_tabular({"train": "a.csv"}, tmp_path)
    with pytest.raises(ConfigError, match=r"add under \[data.tabular\]: interactions = "):
        load_tabular({}, tmp_path)
    with pytest.raises(ConfigError, match=r"remove from \[data.tabular\]: train, test"):
        load_tabular({"interactions": "a.csv", "train": "a.csv", "test": "a.csv"}, tmp_path)


@pytest.mark.parametrize(
    ("given", "fix"),
    [
        ({}, 'set under [data.tabular]: user_id = "userId"'),
        ({"user_id": "userId"}, 'set under [data.tabular]: item_id = "movieId"'),
        ({"user_id": "userId", "item_id": "movieId", "timestamp": "time"},
         'set under [data.tabular]: timestamp = "ts"'),
    ],
)  # fmt: skip
def test_a_misnamed_column_shows_the_name_the_file_uses(
    tmp_path: Path, given: dict[str, str], fix: str
) -> None:
    pd.DataFrame({"userId": [1], "movieId": [2], "ts": [3]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError) as e:
        load_tabular({"interactions": "a.csv", **given}, tmp_path)
    assert fix in str(e.value) and "a.csv:1" in str(e.value)


def test_an_unknown_other_name_keeps_the_plain_error(tmp_path: Path) -> None:
    pd.DataFrame({"who": [1], "item_id": [2]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match="missing required column 'user_id'") as e:
        load_tabular({"interactions": "a.csv"}, tmp_path)
    assert "set under" not in str(e.value)


@pytest.mark.parametrize(
    ("task", "fix"),
    [
        ({"kind": "rating"}, 'add to it: column = "rating"'),
        ({"kind": "binary"}, 'rule = "rating >= 4"'),
        ({"kind": "reconstruction"}, 'add to it: feature = "genres"'),
    ],
)
def test_a_task_without_its_column_shows_the_line(task: dict[str, str], fix: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict({"tasks": [{"name": "t", **task}]})
    assert fix in str(e.value)


def test_no_task_shows_the_retrieval_task() -> None:
    with pytest.raises(ConfigError, match='name = "retrieval" and kind = "retrieval"'):
        config_from_dict({"data": {"dataset": "synthetic"}})
