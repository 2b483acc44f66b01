"""``FastLane``: a valid ``POST /recommend`` answered without FastAPI's per-request machinery.

FastAPI spends about 0.5 ms of event-loop CPU on a request before any endpoint code runs (the
``GET /healthz`` row of ``benchmarks/bench_serving.py``): middleware layers, routing, dependency
solving, reading the body into Python objects, then validating them. The event loop is one core
on which every request of the service is parsed and written, so that cost caps the requests per
second. The fast lane sits in front of the whole app (``app.Service``), before even Starlette's
error middleware, and does only what a valid request needs: it checks the API key and the body
size, validates the raw body with the same pydantic model (``RecommendRequest``, parsed and
validated in one pass by pydantic's Rust core), adds the user's logged events when the service
has an event log (as the route does), hands the query to the served run's batcher and writes
the JSON. Like the route, it holds the run it started with until it has the answer
(``served.py``), so a reload never changes the model under a request.

Anything else goes to the FastAPI app unchanged, body replayed: another route or method, a
missing or wrong key, a body over the size limit, one that is not JSON or does not validate. So
those refusals keep the status and message of the documented API (401, 413, 422), which the
FastAPI app, whose route is still the one in ``/docs``, produces. A body that does not arrive in
time is the exception: the lane answers it with ``BodyLimit``'s own 408 (``limits.refuse``), as
the app would only wait for the body again. An error of the model (an unknown id, bad features)
is answered here with the route's own answer (``routes.error_answer``: 404, 422), without
running the model again; any other error propagates to the server, which answers 500 as
Starlette's error middleware would.

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
