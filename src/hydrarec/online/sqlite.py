"""The event log in an embedded SQLite file: the default, nothing to start.

Durability: WAL journal with ``synchronous = FULL``: a commit returns once the WAL is synced to
disk, so an acknowledged event survives a killed process and a power cut (NORMAL would only
survive the first). Several processes may write one file: SQLite serialises the writers, and
``busy_timeout`` makes a writer wait its turn instead of failing with "database is locked".
Write transactions begin ``IMMEDIATE`` (the write lock first), so two writers never both read
and then deadlock on upgrading. Readers are never blocked by the writer (WAL).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hydrarec.online.store import META, EventStore, EventStoreError

BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's transaction


class SQLiteStore(EventStore):
    driver_errors = (sqlite3.Error,)
    placeholder = "?"

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(str(path))

    def _connect(self) -> Any:
        # autocommit (isolation_level None): transactions begin where _begin_write says;
        # connections are per thread, but close() may run on another one
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1e3
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise EventStoreError(f"event log {self.path}: cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _setup(self, conn: Any) -> None:
        with self._writing(conn):
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if META in tables:
                self._check_format(conn)
            elif tables - {"sqlite_sequence"}:
                shown = ", ".join(sorted(tables)[:5])
                raise EventStoreError(
                    f"event log {self.path}: an SQLite database of something else (tables: "
                    f"{shown}); give a new file or an existing hydrarec event log"
                )
            else:
                self._create(conn, "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")

    def _begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
