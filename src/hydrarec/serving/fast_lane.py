"""``FastLane``: a valid ``POST /recommend`` answered without FastAPI's per-request machinery.

Middleware layers, routing, dependency solving and the body's round trip through Python objects
run on the event loop, the one core that parses and writes every request of the service. The
lane sits in front of the whole app (``app.Service``) and does only what a valid request needs:
the API key, the body size, one pass of pydantic's validation over the raw body
(``RecommendRequest``), the user's logged events (as the route adds them), the served run's
batcher, the JSON. Like the route, it holds the run it started with until it has the answer
(``served.py``), so a reload never changes the model under a request.

Anything else goes to the FastAPI app, body replayed (another route, a missing or wrong key, a
body over the limit, one that does not validate), so refusals keep the documented API's status
and message (401, 413, 422). A body that does not arrive in time gets ``BodyLimit``'s 408 here;
a model error gets the route's own answer (``routes.error_answer``: 404, 422); any other error
propagates to the server, which answers 500 as Starlette's error middleware would.

Kept instead of a plain FastAPI route because it wins clearly in an alternating A/B against one
(``benchmarks/RESULTS.md``, "Redesign (issue 23): the fast lane against the plain route").
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from pydantic import ValidationError

from hydrarec.serving.auth import key_matches
from hydrarec.serving.limits import (
    DEFAULT_BODY_TIMEOUT,
    ASGIApp,
    Body,
    Receive,
    Send,
    declared_over,
    read_body,
    refuse,
    replaying,
)
from hydrarec.serving.routes import error_answer, recommend_body, recommend_query_with_events
from hydrarec.serving.schemas import RecommendRequest
from hydrarec.serving.served import ServedRun

PATH = "/recommend"


class FastLane:
    """``app``: the whole app, which answers whatever the lane does not. ``max_bytes``: the body
    size over which the app answers instead (413, from its ``BodyLimit``). A body that does not
    arrive within ``body_timeout`` seconds is answered here as ``BodyLimit`` would (408)."""

    def __init__(
        self,
        app: ASGIApp,
        served: ServedRun,
        api_key: str | None = None,
        max_bytes: int | None = None,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.served = served
        self.api_key = None if api_key is None else api_key.encode()
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = dict(reversed(scope["headers"]))  # the first of repeated headers, as Starlette
        too_long = self.max_bytes is not None and declared_over(
            headers.get(b"content-length"), self.max_bytes
        )
        if not self._json(headers) or not self._authorised(headers) or too_long:
            await self.app(scope, receive, send)
            return
        messages, read = await read_body(receive, self.max_bytes, self.body_timeout)
        if read is Body.TOO_SLOW:  # BodyLimit's answer; the app would wait for the body again
            await refuse(send, 408, f"request body not received in {self.body_timeout:g} s")
            return
        replay = replaying(messages, receive)
        if read is Body.TOO_LARGE:  # the app refuses it (413)
            await self.app(scope, replay, send)
            return
        raw = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            body = RecommendRequest.model_validate_json(raw)
        except ValidationError:
            await self.app(scope, replay, send)  # FastAPI's 422, naming the field
            return
        try:
            with self.served.hold() as run:
                query, options, events = await recommend_query_with_events(body, run.history)
                out = await run.batcher.recommend(query, options)
        except Exception as e:
            answer = error_answer(e)  # the route's own answer to it (404, 422), or a 500
            if answer is None:
                raise
            await _send(send, *answer)
            return
        await _send(send, 200, recommend_body(body, out, events))

    @staticmethod
    def _json(headers: dict[bytes, bytes]) -> bool:
        """The body is read as JSON: no content type, or a JSON one (as FastAPI decides)."""
        kind = headers.get(b"content-type")
        if kind is None:
            return True
        main = kind.split(b";", 1)[0].strip().lower()
        return main == b"application/json" or (
            main.startswith(b"application/") and main.endswith(b"+json")
        )

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        return self.api_key is None or key_matches(headers.get(b"x-api-key"), self.api_key)


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
