"""``LoopQueue``: the queue of the service's batchers follows the event loop that uses it."""

from __future__ import annotations

import asyncio

from hydrarec.serving.loop_queue import LoopQueue


def _doubler() -> tuple[LoopQueue[tuple[int, asyncio.Future[int]]], list[int]]:
    drained: list[int] = []

    async def drain(queue: asyncio.Queue[tuple[int, asyncio.Future[int]]]) -> None:
        while True:
            x, future = await queue.get()
            drained.append(x)
            future.set_result(2 * x)

    return LoopQueue(drain), drained


async def _ask(lq: LoopQueue[tuple[int, asyncio.Future[int]]], x: int) -> tuple[int, bool]:
    queue, new = lq.current()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    queue.put_nowait((x, future))
    return await future, new


def _close(loop: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def test_one_queue_per_loop_and_a_new_one_on_the_next_loop() -> None:
    lq, drained = _doubler()

    async def twice() -> list[tuple[int, bool]]:
        return [await _ask(lq, 1), await _ask(lq, 2)]

    first_loop, second_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        # the first call makes the queue, the second reuses it
        assert first_loop.run_until_complete(twice()) == [(2, True), (4, False)]
        first = lq.queue
        # another event loop while the first one lives on, its drain still pending there (a
        # test client started again): a queue drained on this loop is made, and the call is
        # answered instead of waiting on a loop that no longer runs
        call = asyncio.wait_for(_ask(lq, 3), timeout=2)
        assert second_loop.run_until_complete(call) == (6, True)
        assert lq.queue is not first
        assert drained == [1, 2, 3]
    finally:
        for loop in (first_loop, second_loop):
            _close(loop)


def test_a_cancelled_drain_is_started_again() -> None:
    lq, drained = _doubler()

    async def run() -> tuple[tuple[int, bool], tuple[int, bool]]:
        a = await _ask(lq, 1)
        lq.cancel()
        await asyncio.sleep(0)  # the cancellation lands
        return a, await asyncio.wait_for(_ask(lq, 5), timeout=5)

    assert asyncio.run(run()) == ((2, True), (10, True))
    assert drained == [1, 5]
