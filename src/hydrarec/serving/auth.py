"""The API key, checked before anything of a request is read (issue 21: an invalid body without
a key was answered 422 with the parser's detail, as FastAPI reads the body before it runs a
dependency). ``KeyGuard`` sits in front of the app's routes and body limit; the fast lane checks
the same way with ``key_matches``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, MutableMapping
from typing import Any

from hydrarec.serving.limits import ASGIApp, Receive, Send

MISSING_KEY = "missing or wrong X-API-Key"


def key_matches(given: bytes | None, expected: bytes) -> bool:
    """``given`` (a raw ``X-API-Key`` header) is the key. The header is read as Starlette reads
    one (latin-1) and compared as UTF-8, in constant time: the time taken does not reveal how
    much of the key matched."""
    return given is not None and secrets.compare_digest(given.decode("latin-1").encode(), expected)


class KeyGuard:
    """401 for a request without the key, before its body is read or its path routed; the
    ``open_paths`` (probes, docs) need no key."""

    def __init__(self, app: ASGIApp, key: str, open_paths: Collection[str]) -> None:
        self.app = app
        self.key = key.encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
        if key_matches(given, self.key):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": MISSING_KEY}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"APIKey"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
