"""Streaming interactions from Parquet (issue 7): bounded buffer, every row once, deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydrarec.data.streaming import (
    Columns,
    HashCarve,
    ParquetInteractions,
    fixed_batches,
    rows_of,
    shuffled_blocks,
)
from hydrarec.errors import DataError

ROWS, GROUP, FILES = 1000, 50, 2  # 20 row groups of 50 rows in 2 files


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Row ``r`` has ``rid = r``, user ``u{r % 37}``, item ``r % 101`` and ``y`` missing when
    ``r % 10 == 0``; 500 rows per file, row groups of 50."""
    r = np.arange(ROWS)
    df = pd.DataFrame(
        {
            "user": [f"u{x % 37}" for x in r],
            "item": r % 101,
            "rid": r.astype(float),
            "y": np.where(r % 10 == 0, np.nan, (r % 2).astype(float)),
        }
    )
    paths = []
    per_file = ROWS // FILES
    for k in range(FILES):
        paths.append(tmp_path / f"part-{k}.parquet")
        part = df.iloc[k * per_file : (k + 1) * per_file]
        part.to_parquet(paths[-1], row_group_size=GROUP, index=False)
    return paths


def stream(files: list[Path], buffer_rows: int = 120, seed: int = 0) -> ParquetInteractions:
    return ParquetInteractions(files, "user", "item", ["rid", "y"], buffer_rows, seed).fit()


def rids(batches: Iterator[Columns]) -> list[int]:
    return [int(x) for b in batches for x in b["rid"]]


def test_every_row_once_per_epoch_in_full_batches(files: list[Path]) -> None:
    s = stream(files)
    batches = list(s.epoch(0, batch_size=64))
    assert sorted(rids(iter(batches))) == list(range(ROWS))
    assert [rows_of(b) for b in batches] == [64] * 15 + [ROWS - 15 * 64]
    assert len(batches) == s.steps(64) == 16


def test_rows_are_shuffled_across_row_groups(files: list[Path]) -> None:
    first = rids(iter([next(stream(files).epoch(0, batch_size=64))]))
    assert len({r // GROUP for r in first}) > 1  # the buffer mixes row groups
    assert first != sorted(first)


def test_deterministic_under_seed(files: list[Path]) -> None:
    a = rids(stream(files, seed=3).epoch(1, 64))
    assert a == rids(stream(files, seed=3).epoch(1, 64))  # same seed and epoch: same order
    assert a != rids(stream(files, seed=3).epoch(2, 64))  # next epoch: a new order
    assert a != rids(stream(files, seed=4).epoch(1, 64))


def test_buffer_holds_at_most_buffer_plus_one_chunk() -> None:
    """Rows taken in minus rows given out never exceed the buffer plus the chunk being read,
    and after each block is given out at most the buffer remains: memory follows the buffer,
    not the data (here 10x the buffer)."""
    chunk, buffer, total = 50, 120, 1500
    taken = [0]

    def chunks() -> Iterator[Columns]:
        for start in range(0, total, chunk):
            taken[0] += chunk
            yield {"rid": np.arange(start, start + chunk)}

    given, held = 0, []
    for block in shuffled_blocks(chunks(), buffer, np.random.default_rng(0)):
        held.append(taken[0] - given)  # in the pool when this block left
        given += rows_of(block)
        assert taken[0] - given <= buffer or taken[0] == total
    assert max(held) <= buffer + chunk
    assert given == total


def test_fixed_batches_cut_across_blocks() -> None:
    blocks = [{"x": np.arange(0, 5)}, {"x": np.arange(5, 12)}]
    assert [b["x"].tolist() for b in fixed_batches(blocks, 4)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
    ]


def test_vocabularies_fitted_in_a_first_pass(files: list[Path]) -> None:
    s = stream(files)
    users, items = s.vocabularies_["user"], s.vocabularies_["item"]
    assert s.n_rows_ == ROWS and len(users) == 37 and len(items) == 101
    assert users.values.tolist() == sorted(f"u{k}" for k in range(37))
    assert items.counts[0] == len(range(0, ROWS, 101))  # item 0 at rows 0, 101, ..., 909: 10
    batch = next(s.epoch(0, batch_size=ROWS))
    assert (users.values[batch["user_idx"]] == [f"u{int(r) % 37}" for r in batch["rid"]]).all()
    assert (items.values[batch["item_idx"]] == batch["rid"].astype(int) % 101).all()
    with pytest.raises(DataError, match="not in the files"):
        items.encode(np.array([5, 999]), "item")


def test_missing_labels_are_nan(files: list[Path]) -> None:
    batch = next(stream(files).epoch(0, batch_size=ROWS))
    assert batch["y"].dtype == np.float32
    missing = batch["rid"].astype(int) % 10 == 0
    assert np.isnan(batch["y"][missing]).all() and not np.isnan(batch["y"][~missing]).any()


def test_ranks_read_disjoint_row_groups(files: list[Path]) -> None:
    """Two shards: the same number of steps as one process, every row once over both ranks,
    each row group read by one rank only, about half a global batch per rank and step."""
    steps = stream(files).steps(64)
    parts = []
    for r in (0, 1):
        s = stream(files)
        parts.append(list(s.epoch(0, 64, rank=r, world_size=2)))
        assert s.buffer_stats_.peak_rows <= 120  # each rank's own buffer
    assert len(parts[0]) == len(parts[1]) == steps == 16
    rows = [rids(iter(p)) for p in parts]
    assert sorted(rows[0] + rows[1]) == list(range(ROWS))
    groups = [{r // GROUP for r in rs} for rs in rows]
    assert not groups[0] & groups[1] and len(groups[0]) == len(groups[1]) == 10
    sizes = [[rows_of(b) for b in p] for p in parts]
    assert all(31 <= n <= 32 for ns in sizes for n in ns)  # 500 rows in 16 steps: 31-32 each


def test_one_row_group_is_shared_by_the_ranks_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "one.parquet"
    pd.DataFrame({"user": np.arange(100) % 7, "item": np.arange(100), "rid": np.arange(100.0)}
                 ).to_parquet(path)  # fmt: skip
    one = ParquetInteractions([path], "user", "item", ["rid"], 30).fit()
    whole = list(one.epoch(0, batch_size=16))
    with pytest.warns(UserWarning, match="every rank reads every row group"):
        parts = [list(one.epoch(0, 16, rank=r, world_size=2)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for w, p0, p1 in zip(whole, *parts, strict=True):  # each keeps its half of a global batch
        assert np.concatenate([p0["rid"], p1["rid"]]).tolist() == w["rid"].tolist()


def test_peak_buffered_rows_stay_within_the_buffer(files: list[Path]) -> None:
    s = stream(files, buffer_rows=120)
    assert len(rids(s.epoch(0, 64))) == ROWS
    assert s.buffer_stats_.rows_in == ROWS  # 10x the buffer went through it ...
    assert 0 < s.buffer_stats_.peak_rows <= 120  # ... and at most the buffer stayed


def test_hash_carve_holds_rows_out_of_the_stream(files: list[Path]) -> None:
    carve = HashCarve(valid_ratio=0.1, test_ratio=0.1, seed=5)
    s = ParquetInteractions(files, "user", "item", ["rid", "y"], 120, carve=carve).fit()
    held = s.heldout_
    assert held is not None
    streamed = rids(s.epoch(0, 64))
    out = held.column("rid").to_numpy().astype(int).tolist()
    assert sorted(streamed + out) == list(range(ROWS)) and s.n_rows_ == len(streamed)
    assert sorted(streamed) == sorted(rids(s.epoch(1, 64)))  # the same rows every epoch
    parts = held.column("part").to_numpy()
    assert set(parts.tolist()) == {1, 2} and 0.05 < (parts == 1).mean() * len(out) / ROWS < 0.15
    # a pair's rows share a part: the carve is a function of (user, item) alone
    again = carve.parts(np.array(["u3", "u3"]), np.array([3, 3]))
    assert again[0] == again[1]
    assert s.vocabularies_["item"].counts.sum() == len(streamed)  # vocabularies count train


def test_epoch_before_fit_is_an_error(files: list[Path]) -> None:
    with pytest.raises(DataError, match="before fit"):
        next(ParquetInteractions(files, "user", "item").epoch(0, 8))
