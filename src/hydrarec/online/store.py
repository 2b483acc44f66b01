"""The event log (issue 25): ``Event`` records appended durably to an SQL database, read back per
user in time order and exported whole for retraining.

``open_store(target)``: a path is an embedded SQLite file (created on first use, nothing to
start), a ``postgresql://`` URL a PostgreSQL database that several service replicas can share.
Both keep one table, ``hydrarec_events``:

    seq        arrival order (autoincrement)
    event_id   the client's id of the event, unique: a retried request stores its events once
    user_id    raw ids as text (the service writes them in the run's spelling: ``match_id_type``)
    item_id
    ts         when the event happened, seconds since the Unix epoch (UTC)
    received   when the log received it, same unit
    feedback   JSON object, feedback column -> number (e.g. {"rating": 4})

and an index on ``(user_id, ts, seq)``: one user's events in time order are one index range.

``append(batches)`` writes several requests' batches in one transaction and returns once it is
committed (group commit: under many small requests, one disk sync serves many of them); each
batch's count of newly stored events comes back, so a retry learns what was already there.
Every error of the database driver is an ``EventStoreError`` naming the log and the cause.
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hydrarec.errors import HydrarecError

TABLE = "hydrarec_events"
META = "hydrarec_event_log"  # key -> value; marks a database as a hydrarec event log
FORMAT = "hydrarec-events/1"
COLUMNS = ("seq", "event_id", "user_id", "item_id", "ts", "received", "feedback")


class EventStoreError(HydrarecError):
    """The event log cannot be opened, read or written (corrupt or foreign file, full disk,
    unreachable server); the message names the log and the cause."""


@dataclass(frozen=True)
class Event:
    """One interaction as the log stores it (ids as text, see the module docstring)."""

    user_id: str
    item_id: str
    timestamp: float  # seconds since the Unix epoch (UTC)
    event_id: str | None = None
    feedback: Mapping[str, float] = field(default_factory=dict)


class EventStore(ABC):
    """An SQL event log; each thread that uses it gets a connection of its own."""

    driver_errors: tuple[type[Exception], ...] = ()
    placeholder = "?"

    def __init__(self, target: str) -> None:
        self.target = target  # as shown in messages: a path, or a URL without its password
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []  # every thread's connection, closed by close()
        try:
            with self._failures("open") as conn:
                self._setup(conn)
        except BaseException:
            self.close()
            raise

    # -- what a database provides --------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection, in autocommit mode (transactions begin explicitly)."""

    @abstractmethod
    def _setup(self, conn: Any) -> None:
        """Create the tables in a new database; refuse a database that is not an event log."""

    @abstractmethod
    def _begin_write(self, conn: Any) -> None:
        """Start a write transaction."""

    # -- the log -------------------------------------------------------------------------------
    def append(self, batches: Sequence[Sequence[Event]]) -> list[int]:
        """Store every batch in one transaction; per batch, how many events were new (an event
        whose ``event_id`` is already stored is skipped). Returns after the commit."""
        p = self.placeholder
        insert = (
            f"INSERT INTO {TABLE} (event_id, user_id, item_id, ts, received, feedback) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (event_id) DO NOTHING"
        )
        now = time.time()
        with self._failures("write to") as conn, self._writing(conn):
            stored = []
            cur = conn.cursor()
            for batch in batches:
                rows = [_row(e, now) for e in batch]
                if rows:
                    cur.executemany(insert, rows)
                stored.append(max(cur.rowcount, 0) if rows else 0)
        return stored

    def _create(self, conn: Any, seq: str, real: str) -> None:
        """The tables and index of a new log; ``seq``: the arrival column's definition, ``real``:
        the times' type, as this database spells them."""
        conn.execute(
            f"CREATE TABLE {TABLE} ("
            f"seq {seq}, event_id TEXT UNIQUE, user_id TEXT NOT NULL, "
            f"item_id TEXT NOT NULL, ts {real} NOT NULL, received {real} NOT NULL, feedback TEXT)"
        )
        conn.execute(f"CREATE INDEX {TABLE}_user_time ON {TABLE} (user_id, ts, seq)")
        conn.execute(f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        p = self.placeholder
        conn.execute(f"INSERT INTO {META} (key, value) VALUES ('format', {p})", (FORMAT,))

    def _check_format(self, conn: Any) -> None:
        """Refuse an event log of another format than this hydrarec's."""
        found = conn.execute(f"SELECT value FROM {META} WHERE key = 'format'").fetchone()
        if found is None or found[0] != FORMAT:
            raise EventStoreError(
                f"event log {self.target}: format {found and found[0]!r}, "
                f"this hydrarec reads {FORMAT!r}"
            )

    @contextmanager
    def _writing(self, conn: Any) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        self._begin_write(conn)
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def user_items(
        self, user_id: str, limit: int, received_after: float | None = None
    ) -> list[str]:
        """The item ids of ``user_id``'s latest ``limit`` events, oldest first (by timestamp,
        then arrival); only those received after ``received_after`` when given."""
        p = self.placeholder
        since = "" if received_after is None else f" AND received > {p}"
        query = (
            f"SELECT item_id FROM {TABLE} WHERE user_id = {p}{since} "
            f"ORDER BY ts DESC, seq DESC LIMIT {p}"
        )
        args = (user_id, limit) if received_after is None else (user_id, received_after, limit)
        with self._failures("read") as conn:
            rows = conn.execute(query, args).fetchall()
        return [r[0] for r in reversed(rows)]

    def rows(self, chunk: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """Every stored event as ``COLUMNS`` tuples, in arrival order, ``chunk`` at a time."""
        p = self.placeholder
        query = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE seq > {p} ORDER BY seq LIMIT {p}"
        last = 0
        while True:
            with self._failures("read") as conn:
                rows = conn.execute(query, (last, chunk)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def count(self) -> int:
        with self._failures("read") as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def check(self) -> None:
        """A cheap read of the log; an ``EventStoreError`` if it cannot be read."""
        with self._failures("read") as conn:
            conn.execute(f"SELECT value FROM {META} WHERE key = 'format'").fetchone()

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            _close(conn)
        self._local = threading.local()

    # -- connections and errors ----------------------------------------------------------------
    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        return conn

    def _failures(self, doing: str) -> _Failures:
        return _Failures(self, doing)

    def _drop_connection(self) -> None:
        """Forget this thread's connection after an error (a server connection may be broken:
        the next call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
            _close(conn)


class _Failures:
    """``with store._failures("read") as conn``: the thread's connection; a driver error inside
    becomes an ``EventStoreError`` naming the log (and the connection is dropped)."""

    def __init__(self, store: EventStore, doing: str) -> None:
        self.store = store
        self.doing = doing

    def __enter__(self) -> Any:
        try:
            return self.store._connection()
        except self.store.driver_errors as e:
            raise self._error(e) from e

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is not None and isinstance(exc, self.store.driver_errors):
            self.store._drop_connection()
            raise self._error(exc) from exc
        return False

    def _error(self, exc: BaseException) -> EventStoreError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return EventStoreError(f"cannot {self.doing} the event log {self.store.target}: {reason}")


def _row(e: Event, now: float) -> tuple[Any, ...]:
    feedback = json.dumps(dict(e.feedback), allow_nan=False) if e.feedback else None
    return (e.event_id, e.user_id, e.item_id, float(e.timestamp), now, feedback)


def _rollback(conn: Any) -> None:
    with suppress(Exception):  # the connection is broken: it is dropped with the error that follows
        conn.execute("ROLLBACK")


def _close(conn: Any) -> None:
    with suppress(Exception):  # closing a broken connection: nothing more to do
        conn.close()


def open_store(target: str | Path) -> EventStore:
    """The event log at ``target``: a ``postgresql://`` URL, or a path to an SQLite file
    (created if missing). An ``EventStoreError`` when it cannot be opened."""
    check_target(target)
    text = str(target)
    if is_postgres(text):
        from hydrarec.online.postgres import PostgresStore

        return PostgresStore(text)
    from hydrarec.online.sqlite import SQLiteStore

    return SQLiteStore(Path(text))


def log_identity(target: str | Path) -> str:
    """Which log ``target`` names, comparable across spellings and safe to write down: a file's
    real path, or a URL's server and database without its user and password."""
    text = str(target)
    if not is_postgres(text):
        return os.path.realpath(text)
    url = urlsplit(text)
    query = [(k, v) for k, v in parse_qsl(url.query) if k not in ("user", "password")]
    server = url.netloc.rpartition("@")[2]
    return urlunsplit(("postgresql", server, url.path, urlencode(sorted(query)), ""))


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def check_target(target: str | Path) -> None:
    """Refuse, without opening anything, a ``target`` that cannot name a log: another URL
    scheme, a folder, a file in a folder that does not exist, PostgreSQL without psycopg.
    ``hydrarec serve`` calls it first: such a mistake stops the service before it starts, where
    a log that is merely unavailable (a corrupt file, a server down) does not."""
    text = str(target)
    if is_postgres(text):
        from hydrarec.online.postgres import psycopg

        if psycopg is None:
            raise EventStoreError(
                "a postgresql:// event log needs psycopg 3: pip install 'hydrarec[online]'"
            )
        return
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise EventStoreError(
            f"event log {text!r}: unsupported scheme {scheme!r} "
            "(expected a file path or a postgresql:// URL)"
        )
    path = Path(text)
    if path.is_dir():
        raise EventStoreError(f"event log {path}: is a folder (expected a file path)")
    if not path.parent.is_dir():
        raise EventStoreError(f"event log {path}: the folder {path.parent} does not exist")
