"""``ServedRun``: the run the service answers from, swapped for another without dropping a
request (``POST /admin/reload``, SIGHUP; issue 25, item 4).

A ``Served`` is one loaded run with what serves it: its ``Recommender``, the ``MicroBatcher`` over
its model (in this process or in model processes of its own) and its view of the event log. A
request takes the current one once, when it starts, and keeps it until it is answered
(``ServedRun.hold``). ``reload`` loads the new run beside the old one, off the event loop, checks
it (it loads, answers one recommendation, fits the service), and only then swaps it in, between
two requests: requests under way finish on the old run, those that start after the swap get the
new one, and none waits for the load. The old run is closed (its model processes stopped) once its
last request is answered. A run that is refused (``RunRefused``) leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydrarec.errors import HydrarecError
from hydrarec.recommend.recommender import Recommender, UserQuery
from hydrarec.serving.batcher import MicroBatcher
from hydrarec.serving.event_log import EventHistory, EventLog
from hydrarec.serving.event_routes import feedback_columns
from hydrarec.serving.model_process import ModelPool, settle_heap

log = logging.getLogger("hydrarec.serving")

# how long a replaced run waits for its last requests before it is closed all the same: past a
# model process's call timeout (60 s), so only a request that would fail anyway is cut off
DRAIN_S = 120.0


class RunRefused(HydrarecError):
    """A run ``reload`` will not serve; ``status`` is the HTTP answer's: 422 when it cannot be
    loaded (missing, incomplete, damaged), 409 when it does not fit this service."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeOptions:
    """How each run is served (``create_app``'s arguments of the same names)."""

    index: str | None = None  # overrides the run's recommend.index
    max_batch: int = 64  # concurrent /recommend requests scored together
    model_processes: int = 0  # processes running the model (0: this process)
    pin: bool = True  # each model process on its own share of the cores


@dataclass(eq=False)
class Served:
    """One run being served. ``run`` is the path as given, made absolute but not resolved: a
    symbolic link (``runs/current``) is read again at each reload of the same path."""

    run: Path
    rec: Recommender
    batcher: MicroBatcher
    history: EventHistory | None
    since: float = field(default_factory=time.time)  # when it began serving (Unix time)
    replaced: Path | None = None  # the run it replaced, if it was reloaded
    requests: int = 0  # requests holding it (``ServedRun.hold``)


def serve_run(
    run: str | Path | Recommender, options: ServeOptions, events: EventLog | None
) -> Served:
    """``run`` (a path, loaded read-only, or a loaded ``Recommender``) ready to answer."""
    rec = run if isinstance(run, Recommender) else Recommender.load(run, index=options.index)
    return _ready(rec, options, events)


def _ready(rec: Recommender, options: ServeOptions, events: EventLog | None) -> Served:
    path = Path(os.path.abspath(rec.run.run.path))
    ranker: Recommender | ModelPool = rec
    if options.model_processes:  # each process loads and warms its own copy
        ranker = ModelPool(path, rec.index.kind, options.model_processes, pin=options.pin)
    else:
        rec.warm()  # known users' vectors now, not at their first request
    history = None if events is None else EventHistory(events, rec)
    return Served(path, rec, MicroBatcher(ranker, options.max_batch), history)


class ServedRun:
    """The current ``Served`` and the reloads that replace it."""

    def __init__(
        self,
        first: Served,
        options: ServeOptions,
        events: EventLog | None,
        drain_s: float = DRAIN_S,
    ) -> None:
        self.current = first
        self.options = options
        self.events = events
        self.drain_s = drain_s
        self.reloads = 0  # runs swapped in since the start
        self._lock = threading.Lock()  # the swap, and the count of each run's requests
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="hydrarec-reload")  # one at a time
        self._replaced: set[Served] = set()  # swapped out, not closed yet
        self._retiring: set[asyncio.Task[None]] = set()

    @contextmanager
    def hold(self) -> Iterator[Served]:
        """The current run, kept open until the block ends (a request's whole life)."""
        with self._lock:
            served = self.current
            served.requests += 1
        try:
            yield served
        finally:
            with self._lock:
                served.requests -= 1

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` says of the served run."""
        served = self.current
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(served.since))
        return {"run": str(served.run), "serving_since": since, "reloads": self.reloads}

    async def reload(self, run: str | Path | None = None) -> Served:
        """Serve ``run`` from now on (None: the current run's path again, read anew); the new
        ``Served``. Reloads run one at a time, each loading off the event loop while the old run
        answers. Raises ``RunRefused`` (the old run still serving) for a run it cannot serve."""
        path = self.current.run if run is None else Path(os.path.abspath(run))
        loop = asyncio.get_running_loop()
        new = await loop.run_in_executor(self._loader, self._load, path)
        with self._lock:
            old = self.current
            new.replaced, new.since = old.run, time.time()
            self.current = new
            self.reloads += 1
        self._replaced.add(old)
        task = loop.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        log.info("now serving %s (was %s)", new.run, old.run)
        return new

    def _load(self, path: Path) -> Served:
        """The run at ``path``, loaded, checked and ready; ``RunRefused`` if it cannot be."""
        try:
            rec = Recommender.load(path, index=self.options.index)
            # what a damaged run may only show in use: one known user's recommendation
            rec.recommend([UserQuery(user_id=rec.run.user_ids.raw_ids[0])], k=1)
        except Exception as e:  # whatever the cause, this run is not served
            what = str(e) if isinstance(e, HydrarecError) else f"{type(e).__name__}: {e}"
            raise RunRefused(f"cannot serve {path}: {what}", 422) from e
        self._check_fits(path, rec)
        try:
            return _ready(rec, self.options, self.events)
        except Exception as e:  # a model process that could not load it
            raise RunRefused(f"cannot serve {path}: {type(e).__name__}: {e}", 422) from e

    def _check_fits(self, path: Path, rec: Recommender) -> None:
        """``POST /events`` takes the feedback columns of the run the service started with (its
        body's schema is built once); a run whose tasks read others does not fit."""
        if self.events is None:
            return
        served = feedback_columns(self.current.rec.config)
        wanted = feedback_columns(rec.config)
        if wanted != served:
            raise RunRefused(
                f"cannot serve {path}: its tasks read the feedback columns {wanted}, and this "
                f"service's POST /events takes {served}: restart hydrarec serve with the new run",
                409,
            )

    async def _retire(self, old: Served) -> None:
        """Close ``old`` once its last request is answered (or after ``drain_s`` seconds)."""
        deadline = time.monotonic() + self.drain_s
        while old.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if old.requests:
            log.warning("closing %s with %d requests still under way", old.run, old.requests)
        await self._close(old)
        # the old run's objects were frozen out of the collector's reach (settle_heap): thaw
        # them so its reference cycles are freed, and settle the new run's instead
        gc.unfreeze()
        settle_heap()

    async def _close(self, served: Served) -> None:
        self._replaced.discard(served)
        await served.batcher.aclose()

    async def aclose(self) -> None:
        """Close the current run and any replaced one still open (the service stops)."""
        for task in list(self._retiring):
            task.cancel()
        for served in [*self._replaced, self.current]:
            await self._close(served)
        self._loader.shutdown(wait=False, cancel_futures=True)
