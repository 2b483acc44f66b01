"""MovieLens loaders on the real files (counts published by GroupLens) and on generated files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydrarec.data.dataset import Dataset
from hydrarec.data.movielens import (
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_latest_small,
    load_ncf_negatives,
)
from hydrarec.data.schema import Kind


# -- MovieLens 100K ----------------------------------------------------------------------------
def test_100k_counts_match_the_published_statistics(ml100k: Dataset) -> None:
    assert (ml100k.n_users, ml100k.n_items, len(ml100k.interactions)) == (943, 1682, 100_000)
    counts = ml100k.interactions["rating"].value_counts().sort_index()
    assert counts.to_dict() == {1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}


def test_100k_columns_dtypes_and_file_order(ml100k: Dataset) -> None:
    inter = ml100k.interactions
    assert inter["rating"].dtype == np.float32 and inter["timestamp"].dtype == np.int64
    assert inter["user_id"].dtype == np.int64 and inter["item_id"].dtype == np.int64
    # the first line of u.data is "196	242	3	881250949"
    assert inter.iloc[0][["user_id", "item_id", "rating", "timestamp"]].tolist() == [
        196,
        242,
        3.0,
        881250949,
    ]
    kinds = {c.name: c.kind for c in ml100k.schema.interactions}
    assert kinds == {"rating": Kind.REGRESSION, "timestamp": Kind.TIMESTAMP}
    assert ml100k.label_columns == ["rating"]


def test_100k_items_latin1_titles_years_and_genres(ml100k: Dataset, genres: list[str]) -> None:
    items = ml100k.items.set_index("item_id")
    assert items.loc[543, "title"] == "Misérables, Les (1995)"  # \xe9 in latin-1
    assert items.loc[1104, "title"] == "C'est arrivé près de chez vous (1992)"
    assert items.loc[1, "title"] == "Toy Story (1995)"
    assert items.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc[1, "year"] == 1995.0
    assert np.isnan(items.loc[267, "year"])  # "unknown": no release date
    used = {g for genres in items["genres"] for g in genres}
    assert used == set(genres) and len(used) == 19
    kinds = {c.name: c.kind for c in ml100k.schema.items}
    assert kinds == {
        "item_id": Kind.ID,
        "title": Kind.TEXT,
        "year": Kind.NUMERIC,
        "genres": Kind.MULTI_HOT,
    }


def test_100k_users_features(ml100k: Dataset) -> None:
    users = ml100k.users.set_index("user_id")
    assert users.loc[1].tolist() == [24, "M", "technician", "8"]
    assert set(users["zip_region"]) >= {"T", "V", "0", "9"}  # Canadian codes start with a letter
    kinds = {c.name: c.kind for c in ml100k.schema.users}
    assert kinds == {
        "user_id": Kind.ID,
        "age": Kind.NUMERIC,
        "gender": Kind.CATEGORICAL,
        "occupation": Kind.CATEGORICAL,
        "zip_region": Kind.CATEGORICAL,
    }


def test_100k_u1_split_equals_the_base_and_test_files(ml100k: Dataset, data_dir: Path) -> None:
    u1 = ml100k.given_splits["u1"]
    assert (len(u1["train"]), len(u1["test"])) == (80_000, 20_000)
    assert len(np.intersect1d(u1["train"], u1["test"])) == 0
    inter = ml100k.interactions
    for part in ("train", "test"):  # oracle: the pairs of the shipped file, read independently
        ext = "base" if part == "train" else "test"
        shipped = pd.read_csv(data_dir / "ml-100k" / f"u1.{ext}", sep="\t", header=None)
        ours = inter.iloc[u1[part]]
        assert set(zip(ours["user_id"], ours["item_id"], strict=True)) == set(
            zip(shipped[0], shipped[1], strict=True)
        )


def test_100k_all_given_splits(ml100k: Dataset) -> None:
    assert sorted(ml100k.given_splits) == ["u1", "u2", "u3", "u4", "u5", "ua", "ub"]
    tests = [ml100k.given_splits[f"u{i}"]["test"] for i in range(1, 6)]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(100_000))  # disjoint cover
    for name in ("ua", "ub"):
        parts = ml100k.given_splits[name]
        assert (len(parts["train"]), len(parts["test"])) == (90_570, 9_430)
        per_user = ml100k.interactions.iloc[parts["test"]]["user_id"].value_counts()
        assert (per_user == 10).all() and len(per_user) == 943


def test_100k_loads_in_well_under_a_second(data_dir: Path) -> None:
    best = min(_seconds(lambda: load_movielens_100k(data_dir / "ml-100k")) for _ in range(3))
    assert best < 1.0, f"loading ML-100K took {best:.2f} s"  # ~0.1 s on an idle core


def test_100k_generated_folder(write_ml100k) -> None:
    ds = load_movielens_100k(write_ml100k())
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (3, 3, 6)
    items = ds.items.set_index("item_id")
    assert items.loc[1, "title"] == "Café Society (1995)"
    assert items.loc[1, "genres"] == ["Comedy", "Romance"]
    assert items.loc[3, "genres"] == ["unknown"]
    assert ds.given_splits == {}  # no u1.base / u1.test in the folder


def test_100k_generated_given_split(write_ml100k) -> None:
    path = write_ml100k(
        u1_base="1\t1\t5\t100\n2\t1\t4\t102\n3\t2\t2\t104\n3\t3\t5\t105\n",
        u1_test="2\t3\t1\t103\n1\t2\t3\t101\n",
    )
    parts = load_movielens_100k(path).given_splits["u1"]
    assert parts["test"].tolist() == [1, 3] and parts["train"].tolist() == [0, 2, 4, 5]


# -- MovieLens 1M --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml1m(data_dir: Path) -> Dataset:
    return load_movielens_1m(data_dir / "ml-1m")


def test_1m_implicit_pairs_from_parquet(ml1m: Dataset) -> None:
    inter = ml1m.interactions
    assert len(inter) == 1_000_209 and ml1m.n_users == 6040
    assert inter["item_idx"].nunique() == 3706 and ml1m.n_items == 3883
    assert list(inter.columns) == ["user_id", "item_id", "user_idx", "item_idx"]
    assert ml1m.schema.interactions == [] and ml1m.label_columns == []
    assert inter.iloc[0][["user_id", "item_id"]].tolist() == [1, 1193]  # ratings.dat order


def test_1m_users_and_movies(ml1m: Dataset) -> None:
    users = ml1m.users.set_index("user_id")
    assert users.loc[1].tolist() == [1, "F", 10, "4"]  # age code, gender, occupation, region
    items = ml1m.items.set_index("item_id")
    assert items.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc[73, "title"] == "Misérables, Les (1995)"  # latin-1
    assert items.loc[1, "year"] == 1995.0


def test_1m_ncf_split_and_negatives(ml1m: Dataset, data_dir: Path) -> None:
    parts = ml1m.given_splits["ncf"]
    assert (len(parts["train"]), len(parts["test"])) == (1_000_209 - 6040, 6040)
    test = ml1m.interactions.iloc[parts["test"]]
    assert test["user_id"].is_unique
    # the README: NCF item 25 = movie 48, and user 0's test item is 25
    assert test.set_index("user_id").loc[1, "item_id"] == 48
    users, negatives = load_ncf_negatives(
        data_dir / "ml-1m" / "ncf-leave-one-out" / "ml-1m.test.negative", ml1m
    )
    assert users[0] == 1 and negatives.shape == (6040, 99)
    assert set(np.unique(negatives)) <= set(ml1m.item_ids.raw_ids.tolist())


def test_1m_ratings_dat_takes_precedence(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for name in ("movies.dat", "users.dat", "implicit-pairs-parquet"):  # linked, never copied
        os.symlink(data_dir / "ml-1m" / name, folder / name)
    (folder / "ratings.dat").write_bytes(
        b"1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n"
    )
    ds = load_movielens_1m(folder)
    assert len(ds.interactions) == 3 and ds.label_columns == ["rating"]
    assert ds.interactions["rating"].tolist() == [5.0, 3.0, 5.0]
    assert ds.interactions["timestamp"].dtype == np.int64
    assert ds.n_users == 6040  # every user of users.dat is in the catalogue


# -- MovieLens latest-small --------------------------------------------------------------------
def test_latest_small_counts(data_dir: Path) -> None:
    ds = load_movielens_latest_small(data_dir / "ml-latest-small")
    inter = ds.interactions
    assert len(inter) == 100_836 and ds.n_users == 610
    assert inter["item_idx"].nunique() == 9724 and ds.n_items == 9742
    assert (inter["rating"].min(), inter["rating"].max()) == (0.5, 5.0)
    assert (inter["timestamp"].min(), inter["timestamp"].max()) == (828124615, 1537799250)
    items = ds.items.set_index("item_id")
    assert items.loc[1, "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert items.loc[114335, "genres"] == []  # "(no genres listed)"
    assert (
        items.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    )
    assert items.loc[1, "tags"] == ["pixar", "fun"]
    assert items.loc[2, "year"] == 1995.0
    assert {c.name for c in ds.schema.items} == {"item_id", "title", "year", "genres", "tags"}


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
