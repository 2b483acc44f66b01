"""The dataset registry: names, where files are looked for, and load_dataset."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydrarec.config import DataConfig, SyntheticConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import DATASETS, dataset_names, info, load_dataset, locate
from hydrarec.data.schema import Schema
from hydrarec.errors import ConfigError, DataError


def _fake(folder: Path, *files: str) -> Path:
    """A folder holding empty files (enough for locate, which only looks)."""
    folder.mkdir(parents=True)
    for f in files or ("u.data", "u.item", "u.user", "u.genre"):
        (folder / f).parent.mkdir(parents=True, exist_ok=True)
        (folder / f).touch()
    return folder


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(data dir, cache dir), both set in the environment and empty."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    monkeypatch.setenv("HYDRAREC_DATA_DIR", str(data))
    monkeypatch.setenv("HYDRAREC_CACHE_DIR", str(cache))
    return data, cache


def test_names_and_entries() -> None:
    assert dataset_names() == [
        "movielens-100k",
        "movielens-1m",
        "movielens-latest-small",
        "synthetic",
    ]
    for name in dataset_names()[:3]:
        entry = DATASETS[name]
        assert entry.url == f"https://files.grouplens.org/datasets/movielens/{entry.folder}.zip"
        assert entry.loader is not None and entry.files
    assert DATASETS["synthetic"].folder is None and DATASETS["synthetic"].url is None
    with pytest.raises(ConfigError, match="unknown dataset 'ml-20m'"):
        info("ml-20m")


def test_data_dir_comes_before_the_cache(places: tuple[Path, Path]) -> None:
    data, cache = places
    in_cache = _fake(cache / "ml-100k")
    assert locate("movielens-100k") == in_cache
    in_data = _fake(data / "ml-100k")
    assert locate("movielens-100k") == in_data


def test_an_explicit_path_comes_first_and_alone(places: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = places
    _fake(data / "ml-100k")
    mine = _fake(tmp_path / "mine" / "ml-100k")
    assert locate("movielens-100k", mine) == mine
    assert locate("movielens-100k", mine.parent) == mine  # the folder holding it works too
    with pytest.raises(DataError) as e:
        locate("movielens-100k", tmp_path / "elsewhere")
    assert str(tmp_path / "elsewhere") in str(e.value) and str(data) not in str(e.value)


def test_missing_dataset_lists_every_place_and_the_fetch_command(
    places: tuple[Path, Path],
) -> None:
    data, cache = places
    _fake(data / "ml-100k", "u.data")  # incomplete: skipped
    with pytest.raises(DataError) as e:
        locate("movielens-100k")
    message = str(e.value)
    assert str(data / "ml-100k") in message and str(cache / "ml-100k") in message
    assert "hydrarec datasets fetch movielens-100k" in message
    assert "u.data, u.item, u.user, u.genre" in message


def test_default_cache_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRAREC_DATA_DIR", raising=False)
    monkeypatch.delenv("HYDRAREC_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match="HYDRAREC_DATA_DIR is not set") as e:
        locate("movielens-latest-small")
    assert str(tmp_path / ".cache" / "hydrarec" / "ml-latest-small") in str(e.value)
    folder = _fake(
        tmp_path / ".cache" / "hydrarec" / "ml-latest-small", "ratings.csv", "movies.csv"
    )
    assert locate("movielens-latest-small") == folder


def test_1m_accepts_ratings_dat_or_the_implicit_pairs(places: tuple[Path, Path]) -> None:
    data, _ = places
    folder = _fake(data / "ml-1m", "movies.dat", "users.dat")
    with pytest.raises(DataError, match=r"ratings\.dat or implicit-pairs-parquet/ratings\.parquet"):
        locate("movielens-1m")
    (folder / "implicit-pairs-parquet").mkdir()
    (folder / "implicit-pairs-parquet" / "ratings.parquet").touch()
    assert locate("movielens-1m") == folder


def test_load_dataset_filters_users_and_remaps_given_splits(
    data_dir: Path, ml100k: Dataset
) -> None:
    cfg = DataConfig(dataset="movielens-100k", path=str(data_dir), min_user_interactions=300)
    ds = load_dataset(cfg)
    counts = ml100k.interactions["user_id"].value_counts()
    heavy = set(counts[counts >= 300].index)
    assert set(ds.interactions["user_id"]) == heavy and ds.n_users == len(heavy)
    assert len(ds.interactions) == int(counts[counts >= 300].sum())
    assert ds.n_items == 1682  # the item catalogue is kept
    u1 = ds.given_splits["u1"]
    assert np.array_equal(
        np.sort(np.concatenate([u1["train"], u1["test"]])), np.arange(len(ds.interactions))
    )
    old = ml100k.interactions.iloc[ml100k.given_splits["u1"]["test"]]
    expected = old[old["user_id"].isin(heavy)][["user_id", "item_id"]]
    got = ds.interactions.iloc[u1["test"]][["user_id", "item_id"]]
    assert expected.reset_index(drop=True).equals(got.reset_index(drop=True))


def test_load_dataset_without_filter_is_the_loader_output(data_dir: Path) -> None:
    ds = load_dataset(DataConfig(dataset="movielens-100k", path=str(data_dir / "ml-100k")))
    assert len(ds.interactions) == 100_000 and ds.name == "movielens-100k"


def test_load_dataset_dispatches_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SyntheticConfig] = []

    def generate(cfg: SyntheticConfig) -> Dataset:
        seen.append(cfg)
        inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1]})
        return Dataset.build("synthetic", inter, Schema())

    fake = types.ModuleType("hydrarec.data.synthetic")
    fake.generate = generate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hydrarec.data.synthetic", fake)
    cfg = DataConfig(
        dataset="synthetic", synthetic=SyntheticConfig(n_users=7), min_user_interactions=2
    )
    ds = load_dataset(cfg)
    assert seen[0].n_users == 7
    assert ds.interactions["user_id"].tolist() == [1, 1]
