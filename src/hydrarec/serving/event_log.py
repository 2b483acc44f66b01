"""``EventLog``: the service's side of the event log (``hydrarec serve RUN --events LOG``,
issue 25); ``EventHistory``: a user's logged events as ``/recommend`` history.

Writes are group-committed: ``POST /events`` requests queue, and one writer thread stores every
queued request's batch in one transaction (``EventStore.append``), then answers each of them.
A request is answered only after that commit, so an acknowledged event is on disk; many small
requests share one disk sync instead of paying one each. Reads (one user's latest events, for
``/recommend``) run in a few threads of their own, off the event loop.

The log may be unavailable: a corrupt or foreign file, a full disk, an unreachable PostgreSQL.
The service starts all the same; ``/recommend`` then answers from the run alone, ``POST
/events`` answers 503 (nothing stored), and ``/readyz`` says why. The log is opened again at
most every ``retry_s`` seconds, so it comes back by itself once the cause is gone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydrarec.io.atomic import read_json
from hydrarec.online.store import Event, EventStore, EventStoreError, log_identity, open_store
from hydrarec.recommend.recommender import Recommender, UserQuery
from hydrarec.run.rundir import RunDir
from hydrarec.serving.loop_queue import LoopQueue

log = logging.getLogger("hydrarec.serving")

RETRY_S = 5.0  # how often an unavailable log is opened again
MAX_GROUP = 50_000  # events one transaction may take from the queue
READERS = 4  # threads reading users' events for /recommend
# the latest events of a user read into /recommend: their items are the sequence encoder's most
# recent history (it reads the last model.sequence.max_len) and are excluded as seen
HISTORY_EVENTS = 1000


class EventLog:
    """The log at ``target`` (a path or a ``postgresql://`` URL), opened now if it can be."""

    def __init__(self, target: str, retry_s: float = RETRY_S, max_group: int = MAX_GROUP) -> None:
        self.target = target
        self.retry_s = retry_s
        self.max_group = max_group
        self.store: EventStore | None = None
        self._errors: dict[str, str] = {}  # "open" / "read" / "write" -> the last error's text
        self._lock = threading.Lock()
        self._next_open = 0.0
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hydrarec-events-write")
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="hydrarec-events-read")
        self._groups: LoopQueue[_Pending] = LoopQueue(self._commit_groups)
        self._opened()

    # -- state ---------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.store is not None and not self._errors

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` says of the log."""
        if self.available:
            return {"events": "available"}
        reason = next(iter(self._errors.values()), "not opened")
        return {"events": "unavailable", "events_error": reason}

    def probe(self) -> dict[str, Any]:
        """Open the log if it is closed, read it, and say how it is (``/readyz``). A write
        error stands until a write succeeds: a full disk still lets the log be read."""
        store = self._opened()
        if store is not None:
            try:
                store.check()
                self._errors.pop("read", None)
            except EventStoreError as e:
                self._failed("read", e)
        return self.status()

    def _opened(self) -> EventStore | None:
        """The open store, or None while it cannot be opened (tried every ``retry_s``)."""
        with self._lock:
            if self.store is not None or time.monotonic() < self._next_open:
                return self.store
            try:
                self.store = open_store(self.target)
            except EventStoreError as e:
                self._next_open = time.monotonic() + self.retry_s
                self._failed("open", e)
                return None
            self._errors.pop("open", None)
            return self.store

    def _failed(self, doing: str, error: EventStoreError) -> None:
        if self._errors.get(doing) != str(error):  # say it once, not at every request
            log.error("event log unavailable: %s", error)
        self._errors[doing] = str(error)

    # -- writes --------------------------------------------------------------------------------
    async def append(self, events: list[Event]) -> int:
        """Store ``events`` (one request's batch) with whatever else is queued; how many were
        new. Raises ``EventStoreError`` when the log is unavailable (nothing stored)."""
        queue, _ = self._groups.current()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(events, future))
        return await future

    async def _commit_groups(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await queue.get()]
            size = len(group[0].events)
            while not queue.empty() and size < self.max_group:
                group.append(queue.get_nowait())
                size += len(group[-1].events)
            batches = [p.events for p in group]
            try:
                stored = await loop.run_in_executor(self._writer, self._write, batches)
            except Exception as e:  # every request of the group gets the error
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            for p, n in zip(group, stored, strict=True):
                if not p.future.done():  # not cancelled by a client that went away
                    p.future.set_result(n)

    def _write(self, batches: list[list[Event]]) -> list[int]:
        store = self._opened()
        if store is None:
            raise EventStoreError(self.status()["events_error"])
        try:
            stored = store.append(batches)
        except EventStoreError as e:
            self._failed("write", e)
            raise
        self._errors.pop("write", None)
        return stored

    # -- reads ---------------------------------------------------------------------------------
    async def user_items(
        self, user_id: str, received_after: float | None = None
    ) -> list[str] | None:
        """The items of ``user_id``'s latest events (received after ``received_after``, if
        given), oldest first; None if the log is unavailable (the caller answers from the run
        alone)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, user_id, received_after)

    def _read(self, user_id: str, received_after: float | None) -> list[str] | None:
        store = self._opened()
        if store is None:
            return None
        try:
            items = store.user_items(user_id, HISTORY_EVENTS, received_after)
        except EventStoreError as e:
            self._failed("read", e)
            return None
        self._errors.pop("read", None)
        return items

    def close(self) -> None:
        self._groups.cancel()
        self._writer.shutdown(wait=True)  # a transaction under way finishes
        self._readers.shutdown(wait=False, cancel_futures=True)
        if self.store is not None:
            self.store.close()


@dataclass
class _Pending:
    events: list[Event]
    future: asyncio.Future[int]


class EventHistory:
    """A user's logged events as ``/recommend`` history, in the run's id spelling."""

    def __init__(self, log: EventLog, rec: Recommender) -> None:
        self.log = log
        self.rec = rec
        self.received_after = trained_through(rec.run.run.path, log.target)

    async def extend(self, query: UserQuery) -> tuple[UserQuery, dict[str, Any]]:
        """``query`` with the user's logged events (time order) before its own history, and
        what ``/recommend`` says of them: how many were used, how many name items the run does
        not know (kept in the log, ignored here), or that the log could not be read."""
        if query.user_id is None:
            return query, {"used": 0, "not_in_catalogue": 0, "available": True}
        user = str(self.rec.user_key(query.user_id))
        texts = await self.log.user_items(user, self.received_after)
        if texts is None:
            return query, {"used": 0, "not_in_catalogue": 0, "available": False}
        known = self.catalogue_ids(texts)
        history = [*known, *(query.history or [])]
        info = {"used": len(known), "not_in_catalogue": len(texts) - len(known), "available": True}
        return UserQuery(query.user_id, history or None, query.features), info

    def catalogue_ids(self, texts: list[str]) -> list[Any]:
        """The raw ids, in order, of the items in ``texts`` (stored text ids) that the run
        knows (``match_id_type``: "42" is item 42 of a run with integer ids, "042" is none)."""
        ids = self.rec.run.item_ids
        keys = [self.rec.item_key(t) for t in texts]
        kind = ids.raw_ids.dtype.kind
        typed = [k for k in keys if isinstance(k, str) != (kind in "iu")]  # of the run's id type
        if not typed:
            return []
        index = ids.index(typed, missing="minus_one")
        return ids.raw(index[index >= 0]).tolist() if (index >= 0).any() else []


def trained_through(run: Path, target: str) -> float | None:
    """The arrival time of the last event of log ``target`` that ``run`` was trained on, when
    it was updated from that log (``hydrarec update --events``): those events are already in
    the run's history, and are read from the log no more, so that none counts twice."""
    file = RunDir(run).update
    facts = read_json(file) if file.is_file() else {}
    if facts.get("events_log") != log_identity(target):
        return None
    return float(facts["events_received_through"])
