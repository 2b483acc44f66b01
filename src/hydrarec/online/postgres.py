"""The event log in PostgreSQL (``hydrarec serve RUN --events postgresql://...``): one log that
several service replicas share. Needs psycopg 3 (``pip install 'hydrarec[online]'``).

Durability is the server's: a commit returns once PostgreSQL has flushed its WAL (with its
default ``synchronous_commit = on``). The tables are created on first use under an advisory
lock, so replicas that start together do not race to create them. A broken connection (the
server restarted) is dropped with its error and a new one is opened by the next call.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hydrarec.online.store import META, TABLE, EventStore, EventStoreError

CONNECT_TIMEOUT_S = 5  # an unreachable server is reported after this, not after the OS's minutes

try:
    import psycopg
except ImportError:  # only needed for postgresql:// logs
    psycopg = None  # type: ignore[assignment]


class PostgresStore(EventStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        assert psycopg is not None, "open_store checks for psycopg"
        self.driver_errors = (psycopg.Error,)
        self.url = url
        super().__init__(_without_password(url))

    def _connect(self) -> Any:
        assert psycopg is not None
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def _setup(self, conn: Any) -> None:
        with self._writing(conn):
            # replicas starting together: one creates the tables, the others wait and see them
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
            has_meta = conn.execute("SELECT to_regclass(%s)", (META,)).fetchone()[0] is not None
            has_events = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0] is not None
            if has_meta:
                self._check_format(conn)
            elif has_events:
                raise EventStoreError(
                    f"event log {self.target}: a table {TABLE} exists that hydrarec did not "
                    "create; use another database or schema"
                )
            else:
                self._create(conn, "BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION")

    def _begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN")


def _without_password(url: str) -> str:
    """``url`` as shown in messages and logs: the password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
