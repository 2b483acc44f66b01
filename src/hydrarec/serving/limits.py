"""``BodyLimit``: answer 413 to request bodies over a size limit, before anything parses them, and
408 to bodies that do not arrive in time.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is refused at once; a body
without one (chunked) is read up to the limit and refused as soon as it goes over, so a client
cannot make the service buffer more than ``max_bytes``. The whole body must arrive within
``timeout`` seconds of the request's headers: a client sending a few bytes at a time would
otherwise hold its connection, and a request in flight, for as long as it likes (issue 21: a
100-byte body at 1 byte/s had no answer after 35 s). Accepted bodies are replayed to the app.
Hand-made because uvicorn, the server, has no limit on a request body's size or arrival time.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

DEFAULT_BODY_TIMEOUT = 10.0  # seconds for a whole body (1 MiB, the default limit, at 100 KB/s)


class Body(Enum):
    """How reading a request's body ended."""

    READ = "read"  # whole, or the client went away
    TOO_LARGE = "too large"
    TOO_SLOW = "too slow"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared_over(declared, self.max_bytes):
            await refuse(send, 413, f"request body over {self.max_bytes} bytes")
            return
        messages, body = await read_body(receive, self.max_bytes, self.timeout)
        if body is Body.TOO_LARGE:
            await refuse(send, 413, f"request body over {self.max_bytes} bytes")
            return
        if body is Body.TOO_SLOW:
            await refuse(send, 408, f"request body not received in {self.timeout:g} s")
            return
        await self.app(scope, replaying(messages, receive), send)


async def refuse(send: Send, status: int, detail: str) -> None:
    """Answer ``{"detail": detail}`` with ``status`` and close the connection (the rest of the
    body, if any, is never read)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def declared_over(declared: bytes | None, max_bytes: int) -> bool:
    """A declared ``Content-Length`` (the header's value, if any) over ``max_bytes``."""
    return declared is not None and declared.isdigit() and int(declared) > max_bytes


async def read_body(
    receive: Receive, max_bytes: int | None, timeout: float | None = None
) -> tuple[list[Message], Body]:
    """The request's messages up to its last body chunk (or the client's going away), and how
    reading ended: stopped as soon as the body went over ``max_bytes``, or when ``timeout``
    seconds have passed without the whole of it."""
    if timeout is None:
        return await _read_body(receive, max_bytes, [])
    messages: list[Message] = []  # what was read before a timeout, too
    try:
        if sys.version_info >= (3, 11):  # one timer for the whole body, no task per read
            async with asyncio.timeout(timeout):
                return await _read_body(receive, max_bytes, messages)
        return await asyncio.wait_for(_read_body(receive, max_bytes, messages), timeout)
    except (TimeoutError, asyncio.TimeoutError):  # the same class from 3.11 on
        return messages, Body.TOO_SLOW


async def _read_body(
    receive: Receive, max_bytes: int | None, messages: list[Message]
) -> tuple[list[Message], Body]:
    total = 0
    while True:
        msg = await receive()
        messages.append(msg)
        if msg["type"] != "http.request":
            return messages, Body.READ
        total += len(msg.get("body", b""))
        if max_bytes is not None and total > max_bytes:
            return messages, Body.TOO_LARGE
        if not msg.get("more_body", False):
            return messages, Body.READ


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the messages already read (a buffered body) first, then reads on."""

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay
