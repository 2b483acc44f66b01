"""Interactions larger than memory: Parquet read one row group at a time, shuffled in a buffer.

Two passes over the files (the tf.data / WebDataset recipe):

1. ``fit``: the vocabularies of the user and item id columns (distinct raw values, sorted, and
   how often each occurs), merged row group by row group: memory O(distinct ids), not O(rows).
2. ``epoch(e)``: the row groups in a random order drawn from (seed, e) fill a shuffle buffer of
   ``buffer_rows`` rows; whenever a row group arrives, the buffer and the group are shuffled
   together and all but ``buffer_rows`` rows leave as the next block. Batches are cut from the
   blocks. Every row is yielded exactly once per epoch, the order depends only on (seed, epoch),
   and at most ``buffer_rows`` + one row group are held at a time.

The shuffle is local: a row can only move within its buffer window, so a buffer of a few row
groups (or files written in random order) is needed for batches that look i.i.d. Ids are
encoded to 0-based vocabulary positions (``user_idx`` / ``item_idx``); labels are float32, NaN
where missing. With ``world_size`` ranks every rank reads the same stream and keeps its
contiguous part of each global batch (as ``hydrarec.training.data`` does in memory): every rank
takes the same number of steps, at the price of each rank reading every row group.

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

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hydrarec.errors import DataError

Columns = dict[str, np.ndarray]  # column name -> (n,) array, all of the same length


@dataclass(frozen=True)
class Vocabulary:
    """Distinct raw values of one column, sorted; position i encodes ``values[i]``."""

    values: np.ndarray  # (V,) sorted distinct raw values
    counts: np.ndarray  # (V,) int64, rows holding each value

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, raw: np.ndarray, column: str) -> np.ndarray:
        """Positions of ``raw`` values (int64); a value not seen by ``fit`` is an error."""
        idx = pd.Index(self.values).get_indexer(raw)
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


def fit_vocabulary(groups: Iterable[RowGroup], column: str) -> Vocabulary:
    """Distinct values of ``column`` and their counts, one row group at a time."""
    total = pd.Series(dtype=np.int64)
    for g in groups:
        vc = pc.value_counts(read_group(g, [column]).column(column)).flatten()
        part = pd.Series(vc[1].to_numpy(), index=vc[0].to_numpy(zero_copy_only=False))
        total = total.add(part, fill_value=0) if len(total) else part
    total = total.sort_index()
    return Vocabulary(total.index.to_numpy(), total.to_numpy().astype(np.int64))


def take(cols: Columns, index: np.ndarray | slice) -> Columns:
    return {k: v[index] for k, v in cols.items()}


def concat(a: Columns | None, b: Columns) -> Columns:
    return b if a is None else {k: np.concatenate([a[k], b[k]]) for k in b}


def rows_of(cols: Columns) -> int:
    return len(next(iter(cols.values())))


def shuffled_blocks(
    chunks: Iterable[Columns], buffer_rows: int, rng: np.random.Generator
) -> Iterator[Columns]:
    """The rows of ``chunks``, each exactly once, shuffled through a buffer of ``buffer_rows``."""
    pool: Columns | None = None
    for chunk in chunks:
        pool = concat(pool, chunk)  # at most buffer_rows + one chunk
        n = rows_of(pool)
        if n > buffer_rows:
            perm = rng.permutation(n)
            yield take(pool, perm[: n - buffer_rows])
            pool = take(pool, perm[n - buffer_rows :])
    if pool is not None and rows_of(pool):
        yield take(pool, rng.permutation(rows_of(pool)))


def fixed_batches(blocks: Iterable[Columns], batch_size: int) -> Iterator[Columns]:
    """Batches of exactly ``batch_size`` rows cut across blocks; the last may be shorter."""
    carry: Columns | None = None
    for block in blocks:
        block = concat(carry, block)
        full = rows_of(block) // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield take(block, slice(start, start + batch_size))
        carry = take(block, slice(full, None))
    if carry is not None and rows_of(carry):
        yield carry


class ParquetInteractions:
    """Interactions in Parquet files, streamed in shuffled batches (see the module doc).

    ``fit`` sets ``vocabularies_`` (user and item columns), ``n_rows_`` and ``groups_``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        user_column: str,
        item_column: str,
        label_columns: Sequence[str] = (),
        buffer_rows: int = 1_000_000,
        seed: int = 0,
    ) -> None:
        if buffer_rows < 0:
            raise DataError(f"buffer_rows must be >= 0, got {buffer_rows}")
        self.paths = [Path(p) for p in paths]
        self.user_column = user_column
        self.item_column = item_column
        self.label_columns = list(label_columns)
        self.buffer_rows = buffer_rows
        self.seed = seed

    def fit(self) -> ParquetInteractions:
        """First pass: the id vocabularies (memory O(distinct ids))."""
        self.groups_ = row_groups(self.paths)
        self.n_rows_ = sum(g.rows for g in self.groups_)
        self.vocabularies_ = {
            c: fit_vocabulary(self.groups_, c) for c in (self.user_column, self.item_column)
        }
        return self

    def steps(self, batch_size: int) -> int:
        """Global batches per epoch (the same on every rank)."""
        return -(-self._fitted().n_rows_ // batch_size)

    def epoch(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Columns]:
        """This rank's part of each shuffled global batch of ``epoch``: ``user_idx``,
        ``item_idx`` (int64) and every label column (float32, NaN where missing)."""
        if not 0 <= rank < world_size or batch_size < world_size:
            raise DataError(
                f"rank {rank}, world_size {world_size}, batch_size {batch_size}",
                expected="0 <= rank < world_size <= batch_size",
            )
        self._fitted()
        rng = np.random.default_rng([self.seed, epoch])
        order = [self.groups_[i] for i in rng.permutation(len(self.groups_))]
        blocks = shuffled_blocks(self._encoded(order), self.buffer_rows, rng)
        for batch in fixed_batches(blocks, batch_size):
            if rows_of(batch) >= world_size:  # a last batch smaller than W is dropped
                parts = np.array_split(np.arange(rows_of(batch)), world_size)
                yield take(batch, parts[rank])

    def _encoded(self, groups: Iterable[RowGroup]) -> Iterator[Columns]:
        columns = [self.user_column, self.item_column, *self.label_columns]
        for g in groups:
            yield self._encode(read_group(g, columns))

    def _encode(self, table: pa.Table) -> Columns:
        out: Columns = {}
        for name, column in (("user_idx", self.user_column), ("item_idx", self.item_column)):
            raw = table.column(column).to_numpy(zero_copy_only=False)
            out[name] = self.vocabularies_[column].encode(raw, column)
        for c in self.label_columns:
            values = pc.cast(table.column(c), pa.float32())
            out[c] = values.to_numpy(zero_copy_only=False).astype(np.float32)  # null -> NaN
        return out

    def _fitted(self) -> ParquetInteractions:
        if not hasattr(self, "vocabularies_"):
            raise DataError("ParquetInteractions.epoch() before fit()", expected="fit() first")
        return self
