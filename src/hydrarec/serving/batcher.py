"""``MicroBatcher``: concurrent ``/recommend`` requests answered by one ``Recommender`` call.

One request pays the fixed cost of a forward pass (tens of small kernels and their Python
dispatch) for a single user; 16 requests scored together cost about a quarter of 16 separate
calls on CPU (``benchmarks/bench_serving.py``). The batcher is opportunistic: it waits for
nothing. While the model works on one batch, new requests queue; when it is free it takes every
queued request (up to ``max_batch``), so an idle service answers a lone request at once and a busy
one batches by itself. Requests are grouped by their options (k, lists, explain); a batch that
fails (e.g. one unknown id) is retried one request at a time, so each request gets its own answer
or its own error. A ``ModelPool`` is awaited from the event loop itself (``recommend_async``:
the batch goes down a pipe and the answer is read when it arrives); a ``Recommender`` in this
process runs in a thread of its own, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from hydrarec.recommend.recommender import Recommendations, Recommender, UserQuery
from hydrarec.serving.loop_queue import LoopQueue
from hydrarec.serving.model_process import ModelPool


@dataclass(frozen=True)
class Options:
    """What must be equal for requests to share a batch."""

    k: int
    exclude_seen: bool | None
    allow: tuple[Hashable, ...] | None
    deny: tuple[Hashable, ...] | None
    explain: bool

    @classmethod
    def of(
        cls,
        k: int,
        exclude_seen: bool | None,
        allow: Sequence[Any] | None,
        deny: Sequence[Any] | None,
        explain: bool,
    ) -> Options:
        return cls(
            k,
            exclude_seen,
            None if allow is None else tuple(allow),
            None if deny is None else tuple(deny),
            explain,
        )


@dataclass
class _Pending:
    query: UserQuery
    options: Options
    future: asyncio.Future[Recommendations]


class MicroBatcher:
    """``rec``: a ``Recommender`` or a ``ModelPool``. ``parallel`` model calls run at once
    (default: one per process of a pool, else 1): while one batch is scored, the next is taken."""

    def __init__(
        self, rec: Recommender | ModelPool, max_batch: int = 64, parallel: int | None = None
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if parallel is None:
            parallel = len(rec) if isinstance(rec, ModelPool) else 1
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.rec = rec
        self.max_batch = max_batch
        self.parallel = parallel
        self._batches: LoopQueue[_Pending] = LoopQueue(self._run)
        self._calls: set[asyncio.Task[None]] = set()  # batches being answered
        self._scoring = 0  # requests in those batches
        # a Recommender here runs in threads; a ModelPool is awaited on the loop and needs none
        self._pool = (
            None
            if isinstance(rec, ModelPool)
            else ThreadPoolExecutor(self.parallel, thread_name_prefix="hydrarec-model")
        )

    async def recommend(self, query: UserQuery, options: Options) -> Recommendations:
        """One user's recommendations (a one-row ``Recommendations``), batched with others."""
        queue, new = self._batches.current()
        if new:
            self._scoring = 0  # calls of an old loop, if any, never finish in this one
        future: asyncio.Future[Recommendations] = asyncio.get_running_loop().create_future()
        await queue.put(_Pending(query, options, future))
        return await future

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        free = asyncio.Semaphore(self.parallel)  # model calls that may start now
        while True:
            await free.acquire()  # wait for the model before taking a batch, so it takes all
            batch = [await queue.get()]
            # let the event loop finish the requests it has already read (one pass over its
            # ready callbacks), so requests that arrived together are scored together
            await asyncio.sleep(0)
            # with several model calls at once, a fair share of the requests in the service
            # (queued or being scored), so calls stay even instead of one taking all
            share = -(-(queue.qsize() + 1 + self._scoring) // self.parallel)
            while len(batch) < min(self.max_batch, share) and not queue.empty():
                batch.append(queue.get_nowait())
            groups: dict[Options, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(p.options, []).append(p)
            call = asyncio.create_task(self._answer_groups(list(groups.items())))
            self._calls.add(call)
            self._scoring += len(batch)

            def finished(
                done: asyncio.Task[None], free: asyncio.Semaphore = free, n: int = len(batch)
            ) -> None:
                self._calls.discard(done)
                if self._batches.queue is queue:  # not a call of an event loop since replaced
                    self._scoring -= n
                free.release()

            call.add_done_callback(finished)

    async def _answer_groups(self, groups: list[tuple[Options, list[_Pending]]]) -> None:
        for options, members in groups:
            await self._answer(options, members)

    async def _answer(self, options: Options, members: list[_Pending]) -> None:
        try:
            out = await self._score(options, members)
        except Exception as e:
            if len(members) == 1:
                _settle(members[0], error=e)
                return
            for p in members:  # find who failed: one at a time
                await self._answer(options, [p])
            return
        for row, p in enumerate(members):
            _settle(p, result=out.row(row))

    async def _score(self, options: Options, members: list[_Pending]) -> Recommendations:
        queries = [p.query for p in members]
        kwargs: dict[str, Any] = {
            "exclude_seen": options.exclude_seen,
            "allow": options.allow,
            "deny": options.deny,
            "explain": options.explain,
            "predictions": True,
        }
        if isinstance(self.rec, ModelPool):  # awaited on the loop, no thread in between
            return await self.rec.recommend_async(queries, options.k, **kwargs)
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, partial(self.rec.recommend, queries, options.k, **kwargs)
        )

    def close(self) -> None:
        self._batches.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.rec, ModelPool):
            self.rec.close()

    async def aclose(self) -> None:
        """``close`` from the event loop, which goes on answering while model processes stop
        (a reload closes the replaced run's batcher while the service runs)."""
        self._batches.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.rec, ModelPool):
            await asyncio.to_thread(self.rec.close)


def _settle(
    p: _Pending, result: Recommendations | None = None, error: Exception | None = None
) -> None:
    if p.future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        p.future.set_exception(error)
    else:
        assert result is not None
        p.future.set_result(result)
