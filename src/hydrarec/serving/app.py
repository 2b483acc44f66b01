"""``create_app``: the FastAPI service over one ``Recommender`` (OpenAPI at ``/docs``).

    POST /recommend                 top-k for a user id, a history and / or features
    POST /predict                   every task's prediction per (user, item) pair
    GET  /items/{item_id}/similar   nearest items in representation space
    GET  /metadata                  model, tasks, counts, training date, metrics
    GET  /healthz, /readyz          liveness (the process answers) and readiness (index complete,
                                    which run is served)
    POST /events                    with ``events``: a batch of interactions appended to the log,
                                    which ``/recommend`` reads at once (``serving/event_log.py``)
    POST /admin/reload              serve another run without dropping a request (also on SIGHUP;
                                    ``serving/served.py``)

Errors: an unknown id -> 404 naming it; invalid bodies or parameters -> 422 naming the field
(a NaN or infinity the client sent is echoed as the string "NaN" / "Infinity": JSON has no such
number); a body over ``max_body_bytes`` -> 413; with ``api_key``, a missing or wrong ``X-API-Key``
-> 401 on every path but ``/healthz``, ``/readyz`` and the docs (probes must not need the
secret), before the body is read: a client without the key learns nothing of the API.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from pydantic_core import to_json

from hydrarec import __version__
from hydrarec.errors import DataError, UnknownIdError
from hydrarec.recommend.recommender import Recommender
from hydrarec.serving.admin_routes import admin_router
from hydrarec.serving.auth import MISSING_KEY, KeyGuard, key_matches
from hydrarec.serving.event_log import EventLog
from hydrarec.serving.event_routes import events_router
from hydrarec.serving.fast_lane import FastLane
from hydrarec.serving.limits import DEFAULT_BODY_TIMEOUT, BodyLimit, Receive, Send
from hydrarec.serving.model_process import ModelPool, settle_heap
from hydrarec.serving.routes import api_router, error_answer, errors, probe_router
from hydrarec.serving.served import RunRefused, ServedRun, ServeOptions, serve_run

log = logging.getLogger("hydrarec.serving")

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: ~10,000 ids with room to spare


def create_app(
    run: str | Path | Recommender,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    index: str | None = None,
    max_batch: int = 64,
    model_processes: int = 0,
    fast_lane: bool = True,
    pin: bool = True,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    events: str | Path | None = None,
    reloadable: bool = True,
) -> FastAPI:
    """The HTTP service of a run (a path, loaded read-only, or a loaded ``Recommender``).

    ``index`` overrides the run's ``recommend.index`` when a path is given; ``max_batch`` caps
    how many concurrent ``/recommend`` requests share one model call (1: no batching). With
    ``model_processes`` > 0, ``/recommend`` runs its model in that many processes of their own
    (``serving/model_process.py``): the event loop and the model then no longer share a GIL, and
    several batches can be scored at once, each process on its own cores with ``pin``. 0: in this
    process, one batch at a time.
    ``fast_lane`` answers valid ``/recommend`` requests without FastAPI's request machinery
    (``serving/fast_lane.py``); off, every request takes the FastAPI route. A request body not
    received within ``body_timeout`` seconds is a 408. ``events``: the event log (an SQLite
    path or a ``postgresql://`` URL): ``POST /events`` appends to it and ``/recommend`` reads
    each user's logged events as their latest history; a log that cannot be opened leaves the
    service answering from the run alone (``/readyz`` says so).
    ``POST /admin/reload`` and SIGHUP serve another run, or the same path read again, without
    dropping a request (``serving/served.py``); ``reloadable`` False (a worker of several, where
    a reload would reach one of them) answers the route 409 and leaves SIGHUP to uvicorn.
    """
    options = ServeOptions(index, max_batch, model_processes, pin)
    event_log = None if events is None else EventLog(str(events))
    served = ServedRun(serve_run(run, options, event_log), options, event_log)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settle_heap()
        hangup = reloadable and _on_sighup(served)
        yield
        if hangup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await served.aclose()
        if event_log is not None:
            event_log.close()

    app = Service(
        title="hydrarec",
        version=__version__,
        description="Multi-task recommendations from a trained hydrarec run.",
        lifespan=lifespan,
    )
    app.state.served = served  # the run served now: served.current
    first = served.current.batcher.rec  # the model of the run the service started with
    app.state.model_pool = first if isinstance(first, ModelPool) else None
    app.state.event_log = event_log
    if fast_lane:
        app.lane = FastLane(app.stack, served, api_key, max_body_bytes, body_timeout)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout=body_timeout)  # type: ignore[arg-type]
    if api_key:  # added last, so it runs first: 401 before the body limit or the body is read
        open_paths = _open_paths(app)
        app.add_middleware(KeyGuard, key=api_key, open_paths=open_paths)  # type: ignore[arg-type]
    # the guard's twin as a dependency declares the key in the OpenAPI schema
    guard = [Depends(_key_guard(api_key))] if api_key else []
    keyed = errors(401) if api_key else None
    app.include_router(api_router(served), dependencies=guard, responses=keyed)
    if event_log is not None:
        app.include_router(events_router(served, event_log), dependencies=guard, responses=keyed)
    app.include_router(admin_router(served, reloadable), dependencies=guard)
    app.include_router(probe_router(served, event_log))
    app.add_exception_handler(UnknownIdError, _model_error)
    app.add_exception_handler(DataError, _model_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    return app


def _on_sighup(served: ServedRun) -> bool:
    """Reload the served run's path on SIGHUP (a refused run is a log line, the old one goes
    on serving); False where no handler can be set (not the main thread, not Unix)."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await served.reload()
        except RunRefused as e:
            log.error("SIGHUP: %s; still serving %s", e, served.current.run)

    def start() -> None:
        task = loop.create_task(reload())
        reloads.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(reloads.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, start)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return False
    return True


class Service(FastAPI):
    """The FastAPI app with the fast lane (``serving/fast_lane.py``) in front of its middleware
    stack: a valid ``POST /recommend`` is answered before Starlette's error middleware and
    FastAPI's own layers run (each an await and a wrapped ``send`` per request); the lane hands
    everything else to the stack (``stack``), and without a lane every request goes there."""

    lane: FastLane | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if self.lane is not None:
            await self.lane(scope, receive, send)
        else:
            await self.stack(scope, receive, send)

    async def stack(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """The app as FastAPI runs it: middleware, routes, exception handlers."""
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]


_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


def _key_guard(expected: str) -> Callable[..., Any]:
    def check(key: str | None = Depends(_KEY_HEADER)) -> None:
        given = None if key is None else key.encode("latin-1", "replace")
        if not key_matches(given, expected.encode()):
            raise HTTPException(401, MISSING_KEY, {"WWW-Authenticate": "APIKey"})

    return check


def _open_paths(app: FastAPI) -> list[str]:
    """The paths served without the key: the probes and the docs."""
    docs = [app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url]
    return ["/healthz", "/readyz", *(p for p in docs if p)]


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 answer, encodable whatever the body held: NaN and infinities in the echoed
    input become strings (FastAPI's own handler fails on them with a 500, issue 21)."""
    assert isinstance(exc, RequestValidationError)
    body = to_json({"detail": jsonable_encoder(exc.errors())}, inf_nan_mode="strings")
    return Response(body, status_code=422, media_type="application/json")


async def _model_error(request: Request, exc: Exception) -> Response:
    answer = error_answer(exc)
    if answer is None:  # only registered for the errors error_answer knows
        raise exc
    status, body = answer
    return Response(body, status_code=status, media_type="application/json")
