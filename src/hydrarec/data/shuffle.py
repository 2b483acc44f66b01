"""The shuffle buffer and batch cutting of streamed data: pure functions over column blocks.

A block is a dict of equally long numpy columns (``Columns``). ``shuffled_blocks`` passes rows
through a bounded shuffle buffer, ``fixed_batches`` / ``sized_batches`` cut batches across blocks,
and ``deal_groups`` / ``even_sizes`` share row groups and steps among data-parallel ranks
(``hydrarec.data.streaming`` uses them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hydrarec.errors import DataError

Columns = dict[str, np.ndarray]  # column name -> (n,) array, all of the same length


@dataclass
class BufferStats:
    """What a shuffle buffer held: ``peak_rows`` between two reads (at most ``buffer_rows``)."""

    peak_rows: int = 0
    rows_in: int = 0


def take(cols: Columns, index: np.ndarray | slice) -> Columns:
    return {k: v[index] for k, v in cols.items()}


def concat(a: Columns | None, b: Columns) -> Columns:
    return b if a is None else {k: np.concatenate([a[k], b[k]]) for k in b}


def rows_of(cols: Columns) -> int:
    return len(next(iter(cols.values())))


def shuffled_blocks(
    chunks: Iterable[Columns],
    buffer_rows: int,
    rng: np.random.Generator,
    stats: BufferStats | None = None,
) -> Iterator[Columns]:
    """The rows of ``chunks``, each exactly once, shuffled through a buffer of ``buffer_rows``."""
    stats = stats or BufferStats()
    pool: Columns | None = None
    for chunk in chunks:
        stats.rows_in += rows_of(chunk)
        pool = concat(pool, chunk)  # the buffer and the group just read
        n = rows_of(pool)
        if n > buffer_rows:
            perm = rng.permutation(n)
            yield take(pool, perm[: n - buffer_rows])
            pool = take(pool, perm[n - buffer_rows :])
        stats.peak_rows = max(stats.peak_rows, rows_of(pool))  # kept until the next read
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


def sized_batches(blocks: Iterable[Columns], sizes: Sequence[int]) -> Iterator[Columns]:
    """Batches of exactly ``sizes`` rows, in order; the blocks must hold ``sum(sizes)`` rows.

    >>> [b["x"].tolist() for b in sized_batches([{"x": np.arange(3)}, {"x": np.arange(3, 5)}],
    ...                                         [2, 2, 1])]
    [[0, 1], [2, 3], [4]]
    """
    want = iter(sizes)
    need = next(want, None)
    carry: Columns | None = None
    for block in blocks:
        carry, start = concat(carry, block), 0
        while need is not None and rows_of(carry) - start >= need:
            yield take(carry, slice(start, start + need))
            start, need = start + need, next(want, None)
        carry = take(carry, slice(start, None))
    if need is not None or (carry is not None and rows_of(carry)):
        raise DataError(
            f"the files hold {sum(sizes)} train rows at fit() and a different number now",
            expected="files unchanged between fit() and the epochs",
        )


def deal_groups(rows: Sequence[int], world_size: int) -> np.ndarray:
    """Owner rank of each group, in order: each to the rank with the fewest rows so far.

    >>> deal_groups([5, 3, 3, 2], 2).tolist()
    [0, 1, 1, 0]
    """
    load = np.zeros(world_size, dtype=np.int64)
    owner = np.empty(len(rows), dtype=np.int64)
    for g, n in enumerate(rows):
        owner[g] = int(np.argmin(load))  # ties: the lowest rank
        load[owner[g]] += n
    return owner


def even_sizes(n: int, parts: int) -> list[int]:
    """``n`` rows in ``parts`` batches differing by at most one row (the larger first)."""
    return [n // parts + (j < n % parts) for j in range(parts)]
