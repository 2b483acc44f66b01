"""``LoopQueue``: a queue drained by one task on the event loop that uses it.

The service's batchers (``MicroBatcher`` for ``/recommend``, ``EventLog`` for ``POST /events``)
queue requests for a task that answers them in groups. That task belongs to an event loop, and a
service object may outlive its loop (a test client stopped and started again): the queue and its
task are made anew on the loop that uses them, and the old loop's are let go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LoopQueue(Generic[T]):
    """``drain(queue)`` runs as the task that empties ``queue``, on the loop of its callers."""

    def __init__(self, drain: Callable[[asyncio.Queue[T]], Coroutine[Any, Any, None]]) -> None:
        self._drain = drain
        self.queue: asyncio.Queue[T] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def current(self) -> tuple[asyncio.Queue[T], bool]:
        """The running loop's queue, and whether it was made just now (a new loop, or the
        draining task had ended)."""
        loop = asyncio.get_running_loop()
        task, queue = self._task, self.queue
        if queue is not None and task is not None and not task.done() and self._loop is loop:
            return queue, False
        self._loop, self.queue = loop, asyncio.Queue()
        self._task = loop.create_task(self._drain(self.queue))
        return self.queue, True

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
