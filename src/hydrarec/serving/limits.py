"""``BodyLimit``: answer 413 to request bodies over a size limit, before anything parses them.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is refused at once; a body
without one (chunked) is read up to the limit and refused as soon as it goes over, so a client
cannot make the service buffer more than ``max_bytes``. Accepted bodies are replayed to the app.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared_over(declared, self.max_bytes):
            await self._refuse(send)
            return
        messages, over = await read_body(receive, self.max_bytes)
        if over:
            await self._refuse(send)
            return
        await self.app(scope, replaying(messages, receive), send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def declared_over(declared: bytes | None, max_bytes: int) -> bool:
    """A declared ``Content-Length`` (the header's value, if any) over ``max_bytes``."""
    return declared is not None and declared.isdigit() and int(declared) > max_bytes


async def read_body(receive: Receive, max_bytes: int | None) -> tuple[list[Message], bool]:
    """The request's messages up to its last body chunk (or the client's going away), and
    whether the body went over ``max_bytes``; reading stops as soon as it does."""
    messages: list[Message] = []
    total = 0
    while True:
        msg = await receive()
        messages.append(msg)
        if msg["type"] != "http.request":
            return messages, False
        total += len(msg.get("body", b""))
        if max_bytes is not None and total > max_bytes:
            return messages, True
        if not msg.get("more_body", False):
            return messages, False


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the messages already read (a buffered body) first, then reads on."""

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay
