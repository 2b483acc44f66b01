"""Progress of reading a data file: megabytes parsed, rows or lines read (issue 22: minutes of
silence while a large CSV loaded).

Each bar appears only when its work lasts ``SHOW_AFTER_S`` seconds (a small file says nothing,
on the terminal or in the run log) and follows the quiet setting of the bar open around it (see
``training.progress.enclosing_progress``): ``hydrarec train -q``, CI and a piped stdout stay
silent. Parsing is not split into chunks for it: pandas' C parser already pulls its input 256 KiB
at a time, and ``CountingBytes`` counts those reads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydrarec.io.progress import SHOW_AFTER_S, Bar, Progress, enclosing_progress

MB = 1_000_000


class CountingBytes(io.BytesIO):
    """A file's bytes, held in memory, whose reads advance ``bar`` to the megabytes read so far.

    >>> from hydrarec.io.progress import Progress
    >>> with Progress(enabled=False).task("reading", total=megabytes(2_500_000)) as bar:
    ...     f = CountingBytes(b"x" * 2_500_000, bar)
    ...     _ = f.read(1_200_000); seen = bar.completed
    ...     _ = f.read()
    >>> seen, bar.completed
    (2, 3)
    """

    def __init__(self, raw: bytes, bar: Bar) -> None:
        super().__init__(raw)
        self._bar = bar

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        done = megabytes(self.tell())
        if done > self._bar.completed:
            self._bar.advance(n=done - self._bar.completed)
        return data


def megabytes(n_bytes: int) -> int:
    """Whole megabytes begun: a bar's total for ``n_bytes`` (at least 1, so it can finish)."""
    return max(1, math.ceil(n_bytes / MB))


@contextmanager
def reading(
    path: str | Path, total: int | None, unit: str, progress: Progress | None = None
) -> Iterator[Bar]:
    """The bar of reading ``path``: ``total`` ``unit`` (e.g. 52 MB, 2,000,000 rows)."""
    progress = progress or enclosing_progress()
    with progress.task(f"reading {Path(path).name}", total, unit, delay=SHOW_AFTER_S) as bar:
        yield bar
