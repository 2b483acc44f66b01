"""Interactions larger than memory: Parquet read one row group at a time, shuffled in a buffer.

Two passes over the files (the tf.data / WebDataset recipe):

1. ``fit``: one read of every row group for the vocabularies of the user and item id columns
   (distinct raw values of the TRAIN rows, sorted, with their counts), the train rows of each
   group and the held-out rows (``carve``): memory O(distinct ids + held-out rows), not O(rows).
2. ``epoch(e)``: the row groups, in a random order drawn from (seed, e), fill a shuffle buffer
   of ``buffer_rows`` rows; whenever a group arrives, buffer and group are shuffled together and
   all but ``buffer_rows`` rows leave as the next block, which batches are cut from. Every train
   row comes once per epoch, in an order that depends only on (seed, epoch), and at most
   ``buffer_rows`` rows are kept between two reads (plus the group being read).

The shuffle is local: a row can only move within its buffer window, so a buffer of a few row
groups (or files written in random order) is needed for batches that look i.i.d.

Held-out rows (``HashCarve``): a row is valid or test by a hash of its (user, item) raw ids, so
the choice is the same in every pass, on every rank and whatever the file order, and all rows of
a pair land in the same part. Those rows never enter the stream.

Ranks: with ``world_size`` W > 1 each epoch's row groups are dealt to the ranks (``deal_groups``),
so every rank reads only its own groups and keeps its own buffer. All ranks take the same number
of steps, ``ceil(train rows / batch_size)``, each cutting its rows into that many near-equal
batches (about batch_size / W rows); with too few or too uneven groups (e.g. one row group) every
rank reads every group and keeps its contiguous part of each global batch, with a warning.

>>> import tempfile, pandas as pd
>>> path = Path(tempfile.mkdtemp()) / "part-0.parquet"
>>> pd.DataFrame({"user": [5, 7, 5, 9], "item": ["a", "b", "c", "a"], "y": [1.0, 0.0, None, 1.0]}
...              ).to_parquet(path, row_group_size=2)
>>> stream = ParquetInteractions([path], "user", "item", ["y"], buffer_rows=2).fit()
>>> stream.n_rows_, stream.vocabularies_["item"].values.tolist()
(4, ['a', 'b', 'c'])
>>> sorted(int(u) for b in stream.epoch(0, batch_size=3) for u in b["user_idx"])
[0, 0, 1, 2]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hydrarec.data.shuffle import (
    BufferStats,
    Columns,
    deal_groups,
    even_sizes,
    fixed_batches,
    rows_of,
    shuffled_blocks,
    sized_batches,
    take,
)
from hydrarec.errors import DataError

__all__ = [
    "Columns",
    "HashCarve",
    "ParquetInteractions",
    "Vocabulary",
    "fixed_batches",
    "rows_of",
    "shuffled_blocks",
]
MERGE_EVERY = 32  # row groups' value counts merged at once while fitting


@dataclass(frozen=True)
class Vocabulary:
    """Distinct raw values of one column, sorted; position i encodes ``values[i]``."""

    values: np.ndarray  # (V,) sorted distinct raw values
    counts: np.ndarray  # (V,) int64, rows holding each value

    def __len__(self) -> int:
        return len(self.values)

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.values)  # its hash table is built once, not per row group

    def encode(self, raw: np.ndarray, column: str) -> np.ndarray:
        """Positions of ``raw`` values (int64); a value not seen by ``fit`` is an error."""
        idx = self._index.get_indexer(pd.Index(raw))
        if (idx < 0).any():
            bad = raw[idx < 0][:3].tolist()
            raise DataError(
                f"values {bad} were not in the files when the vocabulary was fitted",
                field=column,
                expected="the same files as in fit()",
            )
        return idx.astype(np.int64)


@dataclass(frozen=True)
class RowGroup:
    path: Path
    index: int  # row group number within the file
    rows: int


@dataclass(frozen=True)
class HashCarve:
    """Valid and test rows chosen by a hash of (user, item) (see the module doc).

    >>> parts = HashCarve(0.2, 0.1).parts(np.arange(10_000), np.zeros(10_000, dtype=int))
    >>> [round(float((parts == k).mean()), 2) for k in (0, 1, 2)]
    [0.7, 0.2, 0.1]
    """

    valid_ratio: float
    test_ratio: float = 0.0
    seed: int = 0

    def parts(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,) int8: 0 train, 1 valid, 2 test."""
        frame = pd.DataFrame({"u": users, "i": items})
        key = f"{self.seed % 10**16:016d}"  # the hash key: 16 characters
        h = pd.util.hash_pandas_object(frame, index=False, hash_key=key).to_numpy()
        share = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # uniform in [0, 1)
        out = np.zeros(len(share), dtype=np.int8)
        out[share < self.valid_ratio + self.test_ratio] = 2
        out[share < self.valid_ratio] = 1
        return out


def row_groups(paths: Sequence[str | Path]) -> list[RowGroup]:
    """Every row group of ``paths``, in file order (from the footers: no data is read)."""
    out = []
    for p in map(Path, paths):
        meta = pq.ParquetFile(p).metadata
        out += [RowGroup(p, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    return out


def read_group(group: RowGroup, columns: list[str]) -> pa.Table:
    table = pq.ParquetFile(group.path).read_row_group(group.index, columns=columns)
    missing = set(columns) - set(table.column_names)
    if missing:
        raise DataError(f"missing columns {sorted(missing)}", file=group.path)
    return table


def value_counts(column: pa.ChunkedArray) -> pd.Series:
    vc = pc.value_counts(column).flatten()
    return pd.Series(vc[1].to_numpy(), index=vc[0].to_numpy(zero_copy_only=False))


def merge_counts(parts: list[pd.Series]) -> pd.Series:
    """Sum of value counts, sorted by value."""
    return pd.concat(parts).groupby(level=0, sort=True).sum()


class ParquetInteractions:
    """Interactions in Parquet files, streamed in shuffled batches (see the module doc).

    ``fit`` sets ``vocabularies_``, ``n_rows_`` (train rows), ``groups_``, ``group_rows_`` (train
    rows of each group) and ``heldout_`` (the carved-out rows with a ``part`` column, 1 valid /
    2 test, or None); each ``epoch`` sets ``buffer_stats_`` (what its shuffle buffer held).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        user_column: str,
        item_column: str,
        label_columns: Sequence[str] = (),
        buffer_rows: int = 1_000_000,
        seed: int = 0,
        carve: HashCarve | None = None,
    ) -> None:
        if buffer_rows < 0:
            raise DataError(f"buffer_rows must be >= 0, got {buffer_rows}")
        self.paths = [Path(p) for p in paths]
        self.user_column = user_column
        self.item_column = item_column
        self.label_columns = list(label_columns)
        self.buffer_rows = buffer_rows
        self.seed = seed
        self.carve = carve

    def fit(self, observe: Callable[[Columns], None] | None = None) -> ParquetInteractions:
        """First pass (see the module doc); ``observe`` gets each group's train label columns."""
        ids = (self.user_column, self.item_column)
        counts: dict[str, list[pd.Series]] = {c: [] for c in ids}
        self.groups_ = row_groups(self.paths)
        self.group_rows_: list[int] = []
        held: list[pa.Table] = []
        for g in self.groups_:
            train, out = self._split(read_group(g, [*ids, *self.label_columns]))
            self.group_rows_.append(train.num_rows)
            held += [out] if out is not None and out.num_rows else []
            for c in ids:
                counts[c].append(value_counts(train.column(c)))
                if len(counts[c]) >= MERGE_EVERY:  # memory: O(distinct ids), not O(groups)
                    counts[c] = [merge_counts(counts[c])]
            if observe is not None:
                observe(self._labels(train))
        self.n_rows_ = sum(self.group_rows_)
        if self.n_rows_ == 0:
            raise DataError("no train rows in the files", file=self.paths[0])
        merged = {c: merge_counts(counts[c]) for c in ids}
        self.vocabularies_ = {
            c: Vocabulary(v.index.to_numpy(), v.to_numpy().astype(np.int64))
            for c, v in merged.items()
        }
        self.heldout_ = pa.concat_tables(held) if held else None
        return self

    def steps(self, batch_size: int) -> int:
        """Global batches per epoch (the same on every rank)."""
        return -(-self._fitted().n_rows_ // batch_size)

    def epoch(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Columns]:
        """This rank's batches of ``epoch`` (see the module doc): ``user_idx``, ``item_idx``
        (int64) and every label column (float32, NaN where missing)."""
        if not 0 <= rank < world_size or batch_size < world_size:
            raise DataError(
                f"rank {rank}, world_size {world_size}, batch_size {batch_size}",
                expected="0 <= rank < world_size <= batch_size",
            )
        self._fitted()
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.groups_))
        self.buffer_stats_ = stats = BufferStats()
        if world_size == 1:
            blocks = shuffled_blocks(self._encoded(order), self.buffer_rows, rng, stats)
            yield from fixed_batches(blocks, batch_size)
            return
        rows = [self.group_rows_[g] for g in order]
        owner = deal_groups(rows, world_size)
        load = np.bincount(owner, weights=rows, minlength=world_size).astype(np.int64)
        steps = self.steps(batch_size)
        if load.min() >= steps:  # every rank has a row for every step: its own groups
            rank_rng = np.random.default_rng([self.seed, epoch, 1 + rank])
            blocks = shuffled_blocks(
                self._encoded(order[owner == rank]), self.buffer_rows, rank_rng, stats
            )
            yield from sized_batches(blocks, even_sizes(int(load[rank]), steps))
            return
        warnings.warn(
            f"{len(self.groups_)} row groups of {sorted(rows)} train rows cannot give each of "
            f"{world_size} ranks a row for each of {steps} steps: every rank reads every row "
            "group (write the files with smaller row groups to shard them)",
            stacklevel=2,
        )
        blocks = shuffled_blocks(self._encoded(order), self.buffer_rows, rng, stats)
        for batch in fixed_batches(blocks, batch_size):
            if rows_of(batch) >= world_size:  # a last batch smaller than W is dropped
                parts = np.array_split(np.arange(rows_of(batch)), world_size)
                yield take(batch, parts[rank])

    def _parts(self, table: pa.Table) -> np.ndarray | None:
        """Each row's part (0 train, else held out) in one row group; None without a carve."""
        if self.carve is None:
            return None
        users = table.column(self.user_column).to_numpy(zero_copy_only=False)
        items = table.column(self.item_column).to_numpy(zero_copy_only=False)
        return self.carve.parts(users, items)

    def _split(self, table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        """(train rows, held-out rows with their ``part``) of one row group."""
        parts = self._parts(table)
        if parts is None:
            return table, None
        out = table.filter(pa.array(parts > 0)).append_column("part", pa.array(parts[parts > 0]))
        return table.filter(pa.array(parts == 0)), out

    def _encoded(self, order: Iterable[int]) -> Iterator[Columns]:
        """Each group's train rows, encoded (the held-out rows are only built by ``fit``)."""
        columns = [self.user_column, self.item_column, *self.label_columns]
        for g in order:
            table = read_group(self.groups_[g], columns)
            parts = self._parts(table)
            yield self._encode(table if parts is None else table.filter(pa.array(parts == 0)))

    def _encode(self, table: pa.Table) -> Columns:
        out: Columns = {}
        for name, column in (("user_idx", self.user_column), ("item_idx", self.item_column)):
            raw = table.column(column).to_numpy(zero_copy_only=False)
            out[name] = self.vocabularies_[column].encode(raw, column)
        return out | self._labels(table)

    def _labels(self, table: pa.Table) -> Columns:
        return {
            c: pc.cast(table.column(c), pa.float32())
            .to_numpy(zero_copy_only=False)  # null -> NaN
            .astype(np.float32, copy=False)
            for c in self.label_columns
        }

    def _fitted(self) -> ParquetInteractions:
        if not hasattr(self, "vocabularies_"):
            raise DataError("ParquetInteractions.epoch() before fit()", expected="fit() first")
        return self
