"""Batch assembly in a background thread, ``depth`` batches ahead of the training step.

Assembling a batch (gathering features, histories, negatives; numpy) and training on it (torch)
alternate in the training loop. A thread that builds the next batches while the step runs takes
assembly off the critical path on a machine with a core to spare, as a ``DataLoader`` worker
would, without a process and without pickling.

It pays where assembly is heavy (large catalogues) and costs where steps are short (ML-100K),
as the thread's many short numpy calls contend with the step's for the GIL
(``benchmarks/RESULTS.md``). Hence off by default (``train.prefetch = 0``).

The batches, and their order, are those of the plain loop: assembly draws only from numpy
generators seeded per (epoch, batch), never from torch's global generator, so a run is the same
with or without the thread (tested). An error in assembly is raised in the training loop, as
itself; leaving the loop early (an error in a step, Ctrl-C, early stop) stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked producer checks whether the consumer left


@dataclass
class _End:
    error: BaseException | None = None


def prefetch(items: Iterable[T], depth: int) -> Generator[T, None, None]:
    """``items``, produced by a background thread at most ``depth`` ahead (0: no thread).

    >>> list(prefetch(iter(range(5)), depth=2))
    [0, 1, 2, 3, 4]
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    left = threading.Event()  # the consumer is gone: stop producing

    def put(item: T | _End) -> bool:
        while not left.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_End())
        except BaseException as e:  # handed to the consumer, raised there
            put(_End(e))

    worker = threading.Thread(target=produce, name="hydrarec-batches", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        left.set()
        worker.join()
