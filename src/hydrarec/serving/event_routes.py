"""``POST /events``: a batch of interactions appended to the event log (``--events``, issue 25).

The body's schema is the run's: besides ``user_id``, ``item_id``, ``timestamp`` and
``event_id``, an event may carry the feedback columns the run's tasks read (e.g. ``rating``), as
finite numbers; any other field is a 422 naming it, as are NaN, an implausible timestamp and a
batch over ``MAX_EVENTS``. The answer comes after the batch is committed (200), or is a 503 when
the log is unavailable, and then nothing of the batch was stored: the client retries it, and
its ``event_id``s keep the retry from storing anything twice.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException

from hydrarec.config import Config
from hydrarec.data.labels import source_column
from hydrarec.online.store import Event, EventStoreError
from hydrarec.recommend.recommender import Recommender
from hydrarec.serving.event_log import EventLog
from hydrarec.serving.routes import ErrorAnswer, errors
from hydrarec.serving.schemas import EventBase, EventsResponse, events_request_model

if TYPE_CHECKING:  # served.py reads feedback_columns from here
    from hydrarec.serving.served import ServedRun

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorAnswer, "description": "the event log is unavailable: nothing was stored"}
}


def feedback_columns(config: Config) -> list[str]:
    """The interaction columns the run's tasks learn from, in task order (an event's feedback)."""
    columns = [source_column(t) for t in config.tasks]
    return list(dict.fromkeys(c for c in columns if c is not None))


def events_router(served: ServedRun, log: EventLog) -> APIRouter:
    """``served``: the run whose ids events are stored in the spelling of (``stored_event``);
    the feedback columns are the first run's, which every reloaded run must share."""
    feedback = feedback_columns(served.current.rec.config)
    request = events_request_model(feedback)
    router = APIRouter()

    async def post_events(body: Any) -> EventsResponse:
        """Append a batch of events to the log; answered once it is committed. ``stored``
        counts the events new to the log, ``duplicates`` those whose ``event_id`` it had."""
        now = time.time()
        rec = served.current.rec
        batch = [stored_event(rec, e, feedback, now) for e in body.events]
        try:
            stored = await log.append(batch)
        except EventStoreError as e:
            raise HTTPException(503, f"nothing stored: {e}") from e
        return EventsResponse(received=len(batch), stored=stored, duplicates=len(batch) - stored)

    # the body's model is built for this run, so it is set here rather than written in the
    # signature (FastAPI reads the annotation for validation and the OpenAPI schema)
    post_events.__annotations__["body"] = request
    router.add_api_route(
        "/events",
        post_events,
        methods=["POST"],
        response_model=EventsResponse,
        responses={**errors(400, 408, 413, 422), **UNAVAILABLE},
    )
    return router


def stored_event(rec: Recommender, event: EventBase, feedback: list[str], now: float) -> Event:
    """An event of the request as the log stores it: ids as text in the run's spelling
    (``match_id_type``: user "42" and 42 are one user of a run with integer ids)."""
    values = {c: getattr(event, c) for c in feedback if getattr(event, c, None) is not None}
    return Event(
        user_id=str(rec.user_key(event.user_id)),
        item_id=str(rec.item_key(event.item_id)),
        timestamp=now if event.timestamp is None else event.timestamp,
        event_id=None if event.event_id is None else str(event.event_id),
        feedback=values,
    )
