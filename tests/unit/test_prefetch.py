"""``prefetch``: the background batch thread gives the same items in order, hands errors over
as themselves, and stops when the training loop leaves early."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hydrarec.training.prefetch import prefetch


def threads() -> int:
    return sum(t.name == "hydrarec-batches" for t in threading.enumerate())


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_same_items_in_order(depth: int) -> None:
    assert list(prefetch(iter(range(50)), depth)) == list(range(50))
    assert threads() == 0


def test_runs_ahead_by_at_most_depth() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            made.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    time.sleep(0.3)  # the producer fills the 2 slots, holds item 3 and waits
    assert made == [0, 1, 2, 3]
    assert list(it) == list(range(1, 10))


def test_an_assembly_error_is_raised_in_the_loop_as_itself() -> None:
    class BadRow(ValueError):
        pass

    def items() -> Iterator[int]:
        yield 1
        raise BadRow("row 7: rating is NaN")

    it = prefetch(items(), depth=2)
    assert next(it) == 1
    with pytest.raises(BadRow, match="row 7"):
        next(it)
    assert threads() == 0


def test_leaving_early_stops_the_thread() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    with pytest.raises(RuntimeError, match="step failed"):
        for i in prefetch(endless(), depth=2):
            if i == 3:
                raise RuntimeError("step failed")
    assert threads() == 0
