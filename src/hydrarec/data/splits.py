"""Train / valid / test splits: pure, deterministic functions of the interactions.

Each function reads an interactions frame (columns ``user_idx``, ``item_idx`` and, where time
matters, ``timestamp``) and returns a ``Split``: sorted int64 row positions of each part. The parts
are disjoint; every function but ``given_split`` covers every row.

>>> df = pd.DataFrame({"user_idx": [0, 0, 0, 1], "item_idx": [5, 6, 7, 5],
...                    "timestamp": [30, 10, 20, 10]})
>>> s = leave_last_out(df)
>>> s.train.tolist(), s.valid.tolist(), s.test.tolist()
([1, 3], [2], [0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.config import SplitConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import TIMESTAMP
from hydrarec.errors import ConfigError, DataError

USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
PARTS = ("train", "valid", "test")
GIVEN_VALID_SHARE = 0.05  # given split without valid and without time: random share of train


@dataclass(frozen=True)
class Split:
    """Row positions (sorted int64) of the train, valid and test parts."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for name in PARTS:
            rows = np.sort(np.asarray(getattr(self, name), dtype=np.int64).ravel())
            object.__setattr__(self, name, rows)

    def summary(self, interactions: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
        """Rows and share of each part; with ``interactions``, also distinct users and items.

        >>> Split(np.array([0, 1, 2]), np.array([3]), np.array([])).summary()["train"]
        {'interactions': 3, 'share': 0.75}
        """
        total = sum(len(getattr(self, p)) for p in PARTS) or 1
        out: dict[str, dict[str, Any]] = {}
        for name in PARTS:
            rows = getattr(self, name)
            part: dict[str, Any] = {"interactions": len(rows), "share": round(len(rows) / total, 4)}
            if interactions is not None:
                sub = interactions.iloc[rows]
                part["users"] = int(sub[USER_IDX].nunique())
                part["items"] = int(sub[ITEM_IDX].nunique())
            out[name] = part
        return out


def random_split(df: pd.DataFrame, valid_ratio: float, test_ratio: float, seed: int) -> Split:
    """Rows shuffled with ``default_rng(seed)``: the first ``round(n * test_ratio)`` are test, the
    next ``round(n * valid_ratio)`` valid, the rest train."""
    _check_ratios(valid_ratio, test_ratio)
    n = len(df)
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = _share(n, test_ratio), _share(n, valid_ratio)
    return Split(perm[n_test + n_valid :], perm[n_test : n_test + n_valid], perm[:n_test])


def leave_last_out(df: pd.DataFrame) -> Split:
    """Per user by time: last interaction = test, second last = valid, the rest = train.

    Ties in time keep file order (the later row counts as later); without a ``timestamp`` column
    file order is the time. A user with one interaction has it in train only (nothing left to
    learn from otherwise); a user with two has one train and one test interaction, no valid.
    Vectorised without a sort: a per-user maximum, taken twice.
    """
    user, ts = _user_and_time(df, "leave_last_out")
    size = np.bincount(user)[user] if len(user) else user  # (n,) the row's user's count
    alive = np.ones(len(user), dtype=bool)
    last = _latest(user, ts, alive)
    alive[last] = False
    second = _latest(user, ts, alive)
    part = np.zeros(len(user), dtype=np.int8)  # 0 train, 1 valid, 2 test
    part[last[size[last] >= 2]] = 2
    part[second[size[second] >= 3]] = 1
    return _from_parts(part)


def temporal_split(df: pd.DataFrame, valid_ratio: float, test_ratio: float) -> Split:
    """Global time cut-offs: test is every interaction at or after the time below which
    ``1 - test_ratio`` of the interactions lie; valid likewise the ``valid_ratio`` before it.

    Each part is a whole time range (train < valid < test, strictly), so interactions sharing a
    timestamp never straddle a cut-off; with many ties a part can be larger than its ratio.
    """
    _check_ratios(valid_ratio, test_ratio)
    ts = _timestamps(df, "temporal_split")
    n = len(ts)
    n_test, n_valid = _share(n, test_ratio), _share(n, valid_ratio)
    cuts = sorted({n - n_test - n_valid, n - n_test} - {n})  # order statistics that start parts
    ordered = np.partition(ts, cuts) if cuts else ts  # O(n), no full sort
    part = np.zeros(n, dtype=np.int8)
    if n_valid + n_test > 0:
        part[ts >= ordered[n - n_test - n_valid]] = 1
    if n_test > 0:
        part[ts >= ordered[n - n_test]] = 2
    return _from_parts(part)


def cold_item_split(df: pd.DataFrame, valid_ratio: float, test_ratio: float, seed: int) -> Split:
    """Hold out items with ALL their interactions. The distinct items that have interactions are
    permuted with ``default_rng(seed)``; the first ``round(n_items * test_ratio)`` are test items,
    the next ``round(n_items * valid_ratio)`` valid items (ratios count items, not rows)."""
    return _cold_split(df, ITEM_IDX, valid_ratio, test_ratio, seed)


def cold_user_split(df: pd.DataFrame, valid_ratio: float, test_ratio: float, seed: int) -> Split:
    """``cold_item_split`` for users: held-out users have no training interaction at all."""
    return _cold_split(df, USER_IDX, valid_ratio, test_ratio, seed)


def given_split(
    dataset: Dataset,
    name: str,
    seed: int = 42,
    carve: str = "last",
    valid_ratio: float = GIVEN_VALID_SHARE,
) -> Split:
    """A split shipped with the data (``dataset.given_splits[name]``).

    When it has no ``valid`` part, valid is carved from train: each user's last train interaction
    by time (ties: file order) for users with at least two train interactions, when the data has
    timestamps; otherwise a random ``GIVEN_VALID_SHARE`` (5 %) of train rows, drawn with
    ``default_rng(seed)``. With ``carve="random"`` valid is always a random ``valid_ratio`` of
    train, the right choice for random folds such as MovieLens ``u1..u5``: a last-by-time valid
    is harder than their test and would bias model selection. Rows in no part stay out.
    """
    if name not in dataset.given_splits:
        known = ", ".join(sorted(dataset.given_splits)) or "none"
        raise ConfigError(
            f"data.split.given: dataset {dataset.name!r} has no split {name!r} (available: "
            f"{known}); {given_fix(dataset)}"
        )
    parts = dataset.given_splits[name]
    n = len(dataset.interactions)
    train = _given_rows(parts, "train", n)
    test = _given_rows(parts, "test", n)
    if "valid" in parts:
        valid = _given_rows(parts, "valid", n)
    else:
        train, valid = _carve_valid(dataset.interactions, train, seed, carve, valid_ratio)
    if np.intersect1d(train, test).size or np.intersect1d(valid, np.union1d(train, test)).size:
        raise DataError(
            f"given split {name!r} of {dataset.name!r}: parts overlap",
            expected="disjoint train / valid / test rows",
        )
    return Split(train, valid, test)


def make_split(dataset: Dataset, cfg: SplitConfig) -> Split:
    """The split ``cfg.kind`` of ``dataset`` (``[data.split]`` of the config)."""
    df = dataset.interactions
    if cfg.kind == "random":
        return random_split(df, cfg.valid_ratio, cfg.test_ratio, cfg.seed)
    if cfg.kind == "leave_last_out":
        return leave_last_out(df)
    if cfg.kind == "temporal":
        return temporal_split(df, cfg.valid_ratio, cfg.test_ratio)
    if cfg.kind == "cold_item":
        return cold_item_split(df, cfg.valid_ratio, cfg.test_ratio, cfg.seed)
    if cfg.kind == "cold_user":
        return cold_user_split(df, cfg.valid_ratio, cfg.test_ratio, cfg.seed)
    if cfg.kind == "given":
        if cfg.given is None:
            known = ", ".join(sorted(dataset.given_splits)) or "none"
            raise ConfigError(
                f"data.split.given: required when data.split.kind = 'given' "
                f"(dataset {dataset.name!r} ships: {known}); {given_fix(dataset)}"
            )
        ratio = cfg.valid_ratio if cfg.valid_ratio > 0 else GIVEN_VALID_SHARE
        return given_split(dataset, cfg.given, cfg.seed, cfg.given_valid, ratio)
    raise ConfigError(f"data.split.kind: unknown split {cfg.kind!r}")  # pragma: no cover


def given_fix(dataset: Dataset) -> str:
    """The TOML that names a split ``dataset`` ships (issue 22: errors show the fix).

    >>> from hydrarec.data.schema import Schema
    >>> ds = Dataset.build("d", pd.DataFrame({"user_id": [1], "item_id": [2]}), Schema(),
    ...                    given_splits={"files": {"train": np.array([0])}})
    >>> given_fix(ds)
    'add under [data.split]: given = "files"'
    """
    known = sorted(dataset.given_splits)
    if not known:
        return (
            "it ships none: use another kind (leave_last_out, random, temporal), or for tabular "
            'data give [data.tabular] train / test files and given = "files"'
        )
    others = f" (or one of {', '.join(known[1:])})" if len(known) > 1 else ""
    return f'add under [data.split]: given = "{known[0]}"{others}'


# --- helpers -----------------------------------------------------------------------------------


def _share(n: int, ratio: float) -> int:
    """``round(n * ratio)`` with halves rounded up (not to even)."""
    return int(np.floor(n * ratio + 0.5))


def _check_ratios(valid_ratio: float, test_ratio: float) -> None:
    for name, r in (("valid_ratio", valid_ratio), ("test_ratio", test_ratio)):
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"data.split.{name}: must be in [0, 1), got {r}")
    if valid_ratio + test_ratio >= 1.0:
        raise ConfigError(
            f"data.split.valid_ratio + test_ratio must be < 1 (train needs rows), "
            f"got {valid_ratio} + {test_ratio}"
        )


def _column(df: pd.DataFrame, name: str, who: str) -> np.ndarray:
    if name not in df.columns:
        raise DataError(f"{who} needs the column {name!r}; columns: {list(df.columns)}", field=name)
    return df[name].to_numpy()


def _timestamps(df: pd.DataFrame, who: str) -> np.ndarray:
    ts = _column(df, TIMESTAMP, who)
    if pd.isna(ts).any():
        raise DataError(f"{who}: missing timestamps", field=TIMESTAMP, expected="int seconds")
    return ts


def _from_parts(part: np.ndarray) -> Split:
    """A split from a per-row part code (0 train, 1 valid, 2 test)."""
    return Split(*(np.flatnonzero(part == k) for k in range(3)))


def _user_and_time(df: pd.DataFrame, who: str) -> tuple[np.ndarray, np.ndarray]:
    """``user_idx`` (int64 >= 0) and ``timestamp`` (zeros without one: file order is time)."""
    user = _column(df, USER_IDX, who).astype(np.int64)
    if len(user) and user.min() < 0:
        raise DataError(f"{who}: negative user index", field=USER_IDX, expected="indices >= 0")
    if TIMESTAMP not in df.columns:
        return user, np.zeros(len(user), dtype=np.int64)
    ts = _timestamps(df, who)
    if not np.issubdtype(ts.dtype, np.number):
        raise DataError(
            f"{who}: timestamps of dtype {ts.dtype}",
            field=TIMESTAMP,
            expected="numbers (int seconds)",
        )
    return user, ts


def _latest(user: np.ndarray, ts: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Row of each user's latest ``alive`` interaction by (timestamp, row position), sorted."""
    rows = np.flatnonzero(alive)
    if len(rows) == 0:
        return rows.astype(np.int64)
    u, t = user[rows], ts[rows]
    lowest = np.iinfo(t.dtype).min if np.issubdtype(t.dtype, np.integer) else -np.inf
    newest = np.full(int(u.max()) + 1, lowest, dtype=t.dtype)
    np.maximum.at(newest, u, t)
    tied = rows[t == newest[u]]  # rows at their user's latest time
    last = np.full(len(newest), -1, dtype=np.int64)
    np.maximum.at(last, user[tied], tied)  # ties: the later row
    return last[last >= 0]


def _cold_split(
    df: pd.DataFrame, column: str, valid_ratio: float, test_ratio: float, seed: int
) -> Split:
    _check_ratios(valid_ratio, test_ratio)
    ids = _column(df, column, f"cold split by {column}").astype(np.int64)
    distinct = np.random.default_rng(seed).permutation(np.unique(ids))
    n_test, n_valid = _share(len(distinct), test_ratio), _share(len(distinct), valid_ratio)
    part = np.zeros(len(ids), dtype=np.int8)
    part[np.isin(ids, distinct[n_test : n_test + n_valid])] = 1
    part[np.isin(ids, distinct[:n_test])] = 2
    return _from_parts(part)


def _given_rows(parts: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    if name not in parts:
        raise DataError(f"given split has no {name!r} part (parts: {sorted(parts)})", field=name)
    rows = np.asarray(parts[name], dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise DataError(
            f"given split part {name!r} has row positions outside 0..{n - 1}", field=name
        )
    return np.sort(rows)


def _carve_valid(
    inter: pd.DataFrame, train: np.ndarray, seed: int, carve: str, valid_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``train`` rows into (train, valid); see ``given_split``."""
    if carve == "last" and TIMESTAMP in inter.columns:
        user, ts = _user_and_time(inter.iloc[train], "given_split")
        last = _latest(user, ts, np.ones(len(train), dtype=bool))
        last = last[np.bincount(user)[user[last]] >= 2]  # users with >= 2 train rows
        is_valid = np.zeros(len(train), dtype=bool)
        is_valid[last] = True
        return train[~is_valid], train[is_valid]
    perm = np.random.default_rng(seed).permutation(len(train))
    n_valid = _share(len(train), valid_ratio if carve == "random" else GIVEN_VALID_SHARE)
    return np.sort(train[perm[n_valid:]]), np.sort(train[perm[:n_valid]])
