"""``GuardedHttpTools``: uvicorn's httptools protocol with a deadline and a size limit on request
headers and a cap on connections, so that slow, idle or half-sent clients cannot hold the
service (issue 21).

uvicorn closes a connection idle between requests (its keep-alive timeout), but waits for ever
for the rest of a request once it has begun, and accepts connections until the process runs out
of file descriptors: ~20,000 half-sent requests stayed open for over a minute and ``/healthz``
was refused meanwhile. This protocol adds:

- a header deadline: a request's line and headers must be complete ``header_timeout`` seconds
  after its connection opened or the previous answer on it went out; else the connection is
  closed, with a 408 if the request had begun;
- a header size limit: more than ``max_header_bytes`` of request line and headers is a 431
  (llhttp, under httptools, has no limit of its own);
- a cap on connections: a connection over ``max_connections`` makes room by closing the one
  that has waited longest for a request's headers (a slow or idle client), so a flood cannot
  keep out a new client, a probe say. When every connection is inside a request, the newcomer
  is let in and its requests answered 503, except the probes (``/healthz``, ``/readyz``).

The deadline is checked by one sweep over the waiting connections, oldest first, a few times per
``header_timeout``: a request costs two dict updates, no timer of its own. The body's deadline
lives in the app, where the body is read (``limits.read_body``).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from hydrarec.errors import ConfigError

PROBES = frozenset({b"/healthz", b"/readyz"})


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # seconds from a connection's opening (or last answer) to headers
    max_header_bytes: int = 16 * 1024  # request line and headers, as uvicorn's h11 default
    max_connections: int = 1000  # open connections before the longest-waiting one is closed

    def __post_init__(self) -> None:
        for name in ("header_timeout", "max_header_bytes", "max_connections"):
            if not getattr(self, name) > 0:  # named as the option of `hydrarec serve`
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} must be > 0, got {getattr(self, name)}")


class HeadersTooLarge(Exception):
    """Raised from a parser callback: the request's line and headers went over the limit."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` under ``limits`` (set by ``serving.server`` before the
    server starts, in each worker process)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # uvicorn's 503 to everyone over the cap: replaced below
        self._app = self.app
        self._waiting = _waiting_of(self.server_state, self.loop, self.limits)
        self._head_bytes = 0  # of the request being received
        self._begun = False  # a byte of the awaited request has arrived
        self._too_large = False

    # -- the connection waits for a request's headers from its opening or its last answer ------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._waiting.evict_oldest()
        super().connection_made(transport)
        self._await_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle now (no pipelined request is next)
            self._await_request()

    def _await_request(self) -> None:
        self._head_bytes = 0
        self._begun = False
        self._waiting.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._begun = True
        super().data_received(data)

    def cut_off(self, reason: bytes) -> None:
        """Close the connection, which waited too long for headers or made room for another:
        with a 408 saying ``reason`` if its request had begun, silently if it was idle."""
        if self.transport.is_closing():
            return
        if self._begun:
            self.transport.write(_answer(408, reason))
        self.transport.close()

    # -- header size ---------------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise HeadersTooLarge  # httptools raises HttpParserError: uvicorn's 400, as a 431

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        limit = self.limits.max_header_bytes
        self.transport.write(_answer(431, f"request headers over {limit} bytes".encode()))
        self.transport.close()

    # -- over the cap, only the probes ---------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._waiting.discard(self)
        over = (
            len(self.connections) > self.limits.max_connections
            or len(self.tasks) >= self.limits.max_connections
        )
        if over and httptools.parse_url(self.url).path not in PROBES:
            self.app = service_unavailable
        else:
            self.app = self._app
        super().on_headers_complete()


class _Waiting:
    """The connections of one server that wait for a request's headers, oldest first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits) -> None:
        self.loop = loop
        self.timeout = limits.header_timeout
        self.period = min(1.0, limits.header_timeout / 4)  # a deadline is met within this
        self.since: dict[GuardedHttpTools, float] = {}  # insertion order is waiting order
        self._sweep: asyncio.TimerHandle | None = None

    def add(self, conn: GuardedHttpTools) -> None:
        self.since.pop(conn, None)  # to the end
        self.since[conn] = self.loop.time()
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.period, self.sweep)

    def discard(self, conn: GuardedHttpTools) -> None:
        self.since.pop(conn, None)

    def evict_oldest(self) -> None:
        if self.since:
            conn = next(iter(self.since))
            del self.since[conn]
            conn.cut_off(b"closed for a new connection: too many open (max-connections)")

    def sweep(self) -> None:
        """Cut off the connections past their deadline; again in ``period`` while any wait."""
        self._sweep = None
        expired = self.loop.time() - self.timeout
        while self.since:
            conn, since = next(iter(self.since.items()))
            if since > expired:
                break
            del self.since[conn]
            conn.cut_off(b"request headers not received in %g s" % self.timeout)
        if self.since:
            self._sweep = self.loop.call_later(self.period, self.sweep)


_SERVERS: weakref.WeakKeyDictionary[ServerState, _Waiting] = weakref.WeakKeyDictionary()


def _waiting_of(
    state: ServerState, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits
) -> _Waiting:
    if state not in _SERVERS:
        _SERVERS[state] = _Waiting(loop, limits)
    return _SERVERS[state]


def _answer(status: int, text: bytes) -> bytes:
    """A whole plain-text answer that closes the connection."""
    head = b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    length = b"content-length: " + str(len(text)).encode() + b"\r\n\r\n"
    return STATUS_LINE[status] + head + length + text
