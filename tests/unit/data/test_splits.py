"""Splits: properties over random interaction tables (hypothesis) and hand-worked examples."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydrarec.config import SplitConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import Column, Kind, Schema
from hydrarec.data.splits import (
    Split,
    cold_item_split,
    cold_user_split,
    given_split,
    leave_last_out,
    make_split,
    random_split,
    temporal_split,
)
from hydrarec.errors import ConfigError, DataError

PROPERTY = settings(max_examples=60, deadline=None)


@st.composite
def frames(draw: st.DrawFn, with_time: bool = True) -> pd.DataFrame:
    """Small interaction tables with many ties in time and users with 1, 2 or more rows."""
    n = draw(st.integers(1, 40))
    ints = st.lists(st.integers(0, 5), min_size=n, max_size=n)
    cols = {"user_idx": draw(ints), "item_idx": draw(ints)}
    if with_time:
        cols["timestamp"] = draw(ints)
    return pd.DataFrame({k: np.asarray(v, dtype=np.int64) for k, v in cols.items()})


ratios = st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.4]), st.sampled_from([0.0, 0.1, 0.3]))


def assert_partition(split: Split, n: int) -> None:
    parts = [split.train, split.valid, split.test]
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0)  # sorted, no repeats
    together = np.concatenate(parts)
    assert len(together) == n and np.array_equal(np.sort(together), np.arange(n))


def items_of(df: pd.DataFrame, rows: np.ndarray, column: str = "item_idx") -> set[int]:
    return set(df[column].to_numpy()[rows].tolist())


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(frames(), ratios, st.integers(0, 3))
def test_every_split_partitions_the_rows(df: pd.DataFrame, r: tuple[float, float], seed: int):
    valid, test = r
    assert_partition(random_split(df, valid, test, seed), len(df))
    assert_partition(leave_last_out(df), len(df))
    assert_partition(temporal_split(df, valid, test), len(df))
    assert_partition(cold_item_split(df, valid, test, seed), len(df))
    assert_partition(cold_user_split(df, valid, test, seed), len(df))


@PROPERTY
@given(st.one_of(frames(), frames(with_time=False)))
def test_leave_last_out_keeps_time_order_per_user(df: pd.DataFrame):
    s = leave_last_out(df)
    ts = df["timestamp"].to_numpy() if "timestamp" in df else np.zeros(len(df), np.int64)
    key = list(zip(ts.tolist(), range(len(df)), strict=True))  # time, then file order
    part = np.zeros(len(df), np.int8)
    part[s.valid], part[s.test] = 1, 2
    for u in np.unique(df["user_idx"]):
        rows = np.flatnonzero(df["user_idx"].to_numpy() == u)
        ordered = sorted(rows.tolist(), key=lambda r: key[r])
        expected = [0] * len(rows)
        if len(rows) >= 2:
            expected[-1] = 2
        if len(rows) >= 3:
            expected[-2] = 1
        assert part[ordered].tolist() == expected  # train ... valid, test: in this order


@PROPERTY
@given(frames(), ratios)
def test_temporal_parts_are_ordered_time_ranges(df: pd.DataFrame, r: tuple[float, float]):
    s = temporal_split(df, *r)
    ts = df["timestamp"].to_numpy()
    parts = [ts[p] for p in (s.train, s.valid, s.test) if len(p)]
    for earlier, later in itertools.pairwise(parts):
        assert earlier.max() < later.min()
    assert len(s.test) >= int(np.floor(len(df) * r[1] + 0.5))  # ties only make it larger


@PROPERTY
@given(frames(), ratios, st.integers(0, 3))
def test_cold_splits_hold_out_whole_entities(df: pd.DataFrame, r: tuple[float, float], seed: int):
    for split, column in ((cold_item_split, "item_idx"), (cold_user_split, "user_idx")):
        s = split(df, *r, seed)
        train, valid, test = (items_of(df, p, column) for p in (s.train, s.valid, s.test))
        assert not train & test and not train & valid and not valid & test
        n_distinct = df[column].nunique()
        assert len(test) == int(np.floor(n_distinct * r[1] + 0.5))


@PROPERTY
@given(frames(), ratios, st.integers(0, 3))
def test_same_seed_same_split(df: pd.DataFrame, r: tuple[float, float], seed: int):
    for split in (random_split, cold_item_split, cold_user_split):
        a, b = split(df, *r, seed), split(df, *r, seed)
        for name in ("train", "valid", "test"):
            assert np.array_equal(getattr(a, name), getattr(b, name))


# --- hand-worked examples -----------------------------------------------------------------------


def test_leave_last_out_by_hand():
    # user 0: rows 0 (t=5), 1 (t=9), 2 (t=9), 3 (t=1) -> by time then file order: 3, 0, 1, 2
    #   -> train 3, 0; valid 1; test 2 (the tie at t=9 goes to the later row)
    # user 1: rows 4, 5 -> train 4 (t=3), test 5 (t=4);  user 2: row 6 alone -> train
    df = pd.DataFrame(
        {"user_idx": [0, 0, 0, 0, 1, 1, 2], "item_idx": [0] * 7, "timestamp": [5, 9, 9, 1, 3, 4, 8]}
    )
    s = leave_last_out(df)
    assert (s.train.tolist(), s.valid.tolist(), s.test.tolist()) == ([0, 3, 4, 6], [1], [2, 5])
    # without time, file order is time: user 0 -> train 0, 1; valid 2; test 3
    s = leave_last_out(df.drop(columns="timestamp"))
    assert (s.train.tolist(), s.valid.tolist(), s.test.tolist()) == ([0, 1, 4, 6], [2], [3, 5])


def test_random_split_by_hand():
    df = pd.DataFrame({"user_idx": np.zeros(10, np.int64), "item_idx": np.arange(10)})
    s = random_split(df, valid_ratio=0.2, test_ratio=0.1, seed=7)
    perm = np.random.default_rng(7).permutation(10)  # test = first 1, valid = next 2
    assert s.test.tolist() == sorted(perm[:1].tolist())
    assert s.valid.tolist() == sorted(perm[1:3].tolist())
    assert len(s.train) == 7


def test_temporal_split_by_hand():
    # sorted times 1 2 3 3 4 5 6 7 8 9; test = top 2 -> t >= 8; valid = next 2 -> 6 <= t < 8
    ts = [5, 1, 3, 3, 9, 7, 2, 8, 4, 6]
    df = pd.DataFrame({"user_idx": [0] * 10, "item_idx": [0] * 10, "timestamp": ts})
    s = temporal_split(df, valid_ratio=0.2, test_ratio=0.2)
    assert (s.train.tolist(), s.valid.tolist(), s.test.tolist()) == (
        [0, 1, 2, 3, 6, 8],
        [5, 9],
        [4, 7],
    )
    # ties at the cut-off go to the later part: test wants 1 row, gets every t == 2
    df = pd.DataFrame({"user_idx": [0] * 4, "item_idx": [0] * 4, "timestamp": [1, 2, 2, 2]})
    assert temporal_split(df, 0.0, 0.25).test.tolist() == [1, 2, 3]


def test_cold_item_split_by_hand():
    df = pd.DataFrame({"user_idx": [0, 1, 0, 1, 2, 2], "item_idx": [3, 3, 5, 8, 8, 9]})
    s = cold_item_split(df, valid_ratio=0.25, test_ratio=0.25, seed=3)
    order = np.random.default_rng(3).permutation([3, 5, 8, 9])  # test item, valid item, rest
    item = df["item_idx"].to_numpy()
    assert s.test.tolist() == np.flatnonzero(item == order[0]).tolist()
    assert s.valid.tolist() == np.flatnonzero(item == order[1]).tolist()


def test_cold_user_split_by_hand():
    df = pd.DataFrame({"user_idx": [4, 4, 6, 7], "item_idx": [0, 1, 0, 1]})
    s = cold_user_split(df, valid_ratio=0.0, test_ratio=0.34, seed=0)  # 3 users -> 1 held out
    held = np.random.default_rng(0).permutation([4, 6, 7])[0]
    assert s.test.tolist() == np.flatnonzero(df["user_idx"].to_numpy() == held).tolist()
    assert len(s.valid) == 0


def test_bad_ratios_name_the_field():
    df = pd.DataFrame({"user_idx": [0], "item_idx": [0], "timestamp": [0]})
    with pytest.raises(ConfigError, match="valid_ratio"):
        random_split(df, 0.6, 0.5, 0)
    with pytest.raises(ConfigError, match="test_ratio"):
        temporal_split(df, 0.0, 1.5)
    with pytest.raises(DataError, match="timestamp"):
        temporal_split(df.drop(columns="timestamp"), 0.1, 0.1)


def test_summary_counts_parts():
    df = pd.DataFrame({"user_idx": [0, 0, 1, 1], "item_idx": [1, 2, 1, 3]})
    s = Split(np.array([0, 2]), np.array([1]), np.array([3]))
    summary = s.summary(df)
    assert summary["train"] == {"interactions": 2, "share": 0.5, "users": 2, "items": 1}
    assert summary["test"] == {"interactions": 1, "share": 0.25, "users": 1, "items": 1}


# --- given splits and make_split ----------------------------------------------------------------


def _dataset(with_time: bool, given: dict[str, dict[str, np.ndarray]]) -> Dataset:
    inter = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "item_id": [10, 11, 12, 10, 12, 11],
            "rating": [4.0, 3, 5, 2, 4, 1],
        }
    )
    if with_time:
        inter["timestamp"] = [30, 10, 20, 5, 5, 1]
    schema = Schema(interactions=[Column("rating", Kind.REGRESSION)])
    return Dataset.build("toy", inter, schema, given_splits=given)


def test_given_split_carves_valid_by_time():
    # train rows 0..4: user 1 -> latest of rows 0 (t30), 1, 2 is row 0; user 2 -> rows 3, 4 tie
    # at t=5 -> the later row 4; test = row 5 (user 3 has no train row)
    ds = _dataset(True, {"u1": {"train": np.arange(5), "test": np.array([5])}})
    s = given_split(ds, "u1")
    assert (s.train.tolist(), s.valid.tolist(), s.test.tolist()) == ([1, 2, 3], [0, 4], [5])


def test_given_split_without_time_draws_five_percent():
    ds = _dataset(False, {"u1": {"train": np.arange(5), "test": np.array([5])}})
    s = given_split(ds, "u1", seed=1)
    assert len(s.valid) == 0  # round(5 * 0.05) = 0
    assert_partition(s, 6)
    big = pd.DataFrame({"user_id": np.arange(100) % 7, "item_id": np.arange(100)})
    ds = Dataset.build(
        "big",
        big,
        Schema(),
        given_splits={"g": {"train": np.arange(80), "test": np.arange(80, 100)}},
    )
    s = given_split(ds, "g", seed=1)
    assert len(s.valid) == 4 and set(s.valid.tolist()) < set(range(80))  # 5 % of 80
    assert np.array_equal(s.valid, given_split(ds, "g", seed=1).valid)


def test_given_split_keeps_a_shipped_valid_and_rejects_unknown_names():
    parts = {"train": np.array([0, 1]), "valid": np.array([2]), "test": np.array([3, 4])}
    ds = _dataset(True, {"a": parts})
    s = given_split(ds, "a")
    assert (s.train.tolist(), s.valid.tolist(), s.test.tolist()) == ([0, 1], [2], [3, 4])
    with pytest.raises(ConfigError, match="available: a"):
        given_split(ds, "b")
    overlapping = _dataset(True, {"x": {"train": np.array([0, 1]), "test": np.array([1])}})
    with pytest.raises(DataError, match="overlap"):
        given_split(overlapping, "x")


@pytest.mark.parametrize(
    ("kind", "direct"),
    [
        ("random", lambda df, c: random_split(df, c.valid_ratio, c.test_ratio, c.seed)),
        ("leave_last_out", lambda df, c: leave_last_out(df)),
        ("temporal", lambda df, c: temporal_split(df, c.valid_ratio, c.test_ratio)),
        ("cold_item", lambda df, c: cold_item_split(df, c.valid_ratio, c.test_ratio, c.seed)),
        ("cold_user", lambda df, c: cold_user_split(df, c.valid_ratio, c.test_ratio, c.seed)),
    ],
)
def test_make_split_dispatches(kind: str, direct: Callable[[pd.DataFrame, SplitConfig], Split]):
    ds = _dataset(True, {})
    cfg = SplitConfig(kind=kind, valid_ratio=0.2, test_ratio=0.2, seed=5)  # type: ignore[arg-type]
    got, want = make_split(ds, cfg), direct(ds.interactions, cfg)
    for name in ("train", "valid", "test"):
        assert np.array_equal(getattr(got, name), getattr(want, name))


def test_make_split_given_needs_a_name():
    ds = _dataset(True, {"u1": {"train": np.arange(5), "test": np.array([5])}})
    with pytest.raises(ConfigError, match=r"data\.split\.given.*u1"):
        make_split(ds, SplitConfig(kind="given"))
    s = make_split(ds, SplitConfig(kind="given", given="u1"))
    assert s.test.tolist() == [5]


def test_given_split_random_carve_takes_valid_ratio_of_train() -> None:
    import pandas as pd

    from hydrarec.data.dataset import Dataset
    from hydrarec.data.schema import Schema
    from hydrarec.data.splits import given_split

    n = 200
    inter = pd.DataFrame(
        {"user_id": np.arange(n) % 10, "item_id": np.arange(n), "timestamp": np.arange(n)}
    )
    parts = {"train": np.arange(150), "test": np.arange(150, 200)}
    ds = Dataset.build("t", inter, Schema(), given_splits={"g": parts})
    last = given_split(ds, "g")
    rand = given_split(ds, "g", seed=1, carve="random", valid_ratio=0.2)
    assert len(last.valid) == 10  # one per user: the last by time
    assert len(rand.valid) == 30  # 20 % of the 150 train rows
    assert set(rand.valid) <= set(range(150)) and not set(rand.valid) & set(rand.train)
    assert sorted([*rand.train, *rand.valid]) == list(range(150))
    assert np.array_equal(rand.valid, given_split(ds, "g", 1, "random", 0.2).valid)
