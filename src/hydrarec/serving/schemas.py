"""Request and response bodies of the HTTP service (pydantic; they are the OpenAPI schema).

Request bodies are strict (issue 21): every field takes only its own JSON type, so ``"10"``,
``true``, ``2.0`` and ``NaN`` are not a ``k`` and ``"true"`` is not a boolean; each is a 422 naming
the field. Raw ids are JSON integers or strings, matched to the run's id type by the one rule of
``Recommender.user_key`` (``"42"`` finds user 42 in a run with integer ids, ``"042"`` does not).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    create_model,
    field_validator,
    model_validator,
)

RawId = Annotated[StrictInt | StrictStr, Field(description="a raw id, as in the data")]
MAX_K = 1000
MAX_LIST = 10_000


class Strict(BaseModel):
    """A request body: unknown keys and values of another JSON type are refused, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(Strict):
    """A user given by ``user_id``, and / or ``history`` and / or ``features`` (cold users)."""

    # what ``_someone`` requires, in the OpenAPI schema too: without it, ``{}`` was valid by the
    # schema and refused by the service (found by the schemathesis test, issue 21)
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["user_id"], "properties": {"user_id": {"not": {"type": "null"}}}},
                {
                    "required": ["history"],
                    "properties": {"history": {"type": "array", "minItems": 1}},
                },
                {"required": ["features"], "properties": {"features": {"type": "object"}}},
            ]
        }
    )

    user_id: RawId | None = None
    history: list[RawId] | None = Field(
        None,
        max_length=MAX_LIST,
        description="raw item ids, most recent last; extends a known user's stored history",
    )
    features: dict[str, Any] | None = Field(
        None, description="raw user features (column -> value), encoded by the run's pipeline"
    )
    k: int = Field(10, ge=1, le=MAX_K, description="items to return")
    exclude_seen: bool | None = Field(None, description="default: the run's recommend.exclude_seen")
    allow: list[RawId] | None = Field(None, max_length=MAX_LIST, description="only these items")
    deny: list[RawId] | None = Field(None, max_length=MAX_LIST, description="never these items")
    explain: bool = Field(False, description="add the history items that support each item")

    @model_validator(mode="after")
    def _someone(self) -> RecommendRequest:
        if self.user_id is None and not self.history and self.features is None:
            raise ValueError("give user_id, history or features")
        return self


class Support(BaseModel):
    item_id: RawId
    similarity: float = Field(description="cosine similarity of the two item vectors")


class RecommendedItem(BaseModel):
    item_id: RawId
    score: float = Field(description="the blend score, or the dot product without a blend")
    predictions: dict[str, float] = Field(description="task -> prediction for this user and item")
    because: list[Support] | None = None


class EventsUsed(BaseModel):
    """What ``/recommend`` made of the user's logged events (only with ``--events``)."""

    used: int = Field(description="events whose items were added to the user's history")
    not_in_catalogue: int = Field(
        description="events of items the run does not know: kept in the log, ignored here"
    )
    available: bool = Field(
        True, description="false: the log could not be read; answered from the run alone"
    )


class RecommendResponse(BaseModel):
    # left out for a user given only by history or features
    user_id: RawId | None = None
    items: list[RecommendedItem]
    events: EventsUsed | None = Field(None, description="with --events: the user's logged events")


class Pair(Strict):
    user_id: RawId
    item_id: RawId


class PredictRequest(Strict):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_LIST)


class PairPrediction(BaseModel):
    user_id: RawId
    item_id: RawId
    predictions: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[PairPrediction]


class SimilarItem(BaseModel):
    item_id: RawId
    similarity: float


class SimilarResponse(BaseModel):
    item_id: RawId
    items: list[SimilarItem]


class Status(BaseModel):
    status: str
    detail: dict[str, Any] = {}


class Metadata(BaseModel):
    model: dict[str, Any]
    tasks: dict[str, str]
    dataset: str | None
    counts: dict[str, Any]
    trained: str | None = Field(description="when training finished (UTC, ISO 8601)")
    hydrarec_version: str | None
    index: str
    blend: dict[str, float]
    metrics: dict[str, Any]


# -- the event log (issue 25) ---------------------------------------------------------------------
MAX_EVENTS = 10_000  # events in one POST /events (larger batches: several requests)
# 1990-01-01 UTC: an earlier event is taken for a unit mistake (a count of days, a zero)
MIN_TIMESTAMP = 631_152_000
MAX_AHEAD_S = 86_400.0  # how far past the server's clock a timestamp may be (clock skew)


class EventBase(Strict):
    """One interaction. The run's feedback columns (its tasks' label columns, e.g. ``rating``)
    are optional number fields of their own; any other field is refused."""

    user_id: RawId
    item_id: RawId
    timestamp: float | None = Field(
        None,
        allow_inf_nan=False,
        description="seconds since the Unix epoch (UTC), from 1990 to a day past the server's "
        "clock; default: when the service received it",
    )
    event_id: StrictStr | StrictInt | None = Field(
        None,
        description="the client's id of the event (text, up to 200 characters): an event whose "
        "id is already stored is skipped, so a retried request stores its events once",
    )

    @field_validator("timestamp")
    @classmethod
    def _plausible_time(cls, ts: float | None) -> float | None:
        if ts is None:
            return ts
        if ts < MIN_TIMESTAMP:
            raise ValueError(f"{ts} is before 1990-01-01 ({MIN_TIMESTAMP}); give Unix seconds")
        latest = time.time() + MAX_AHEAD_S
        if ts > latest:
            raise ValueError(
                f"{ts} is more than {MAX_AHEAD_S:g} s after the server's clock "
                f"({time.time():.0f}); give Unix seconds, not milliseconds"
            )
        return ts

    @field_validator("event_id")
    @classmethod
    def _short_id(cls, event_id: str | int | None) -> str | int | None:
        if isinstance(event_id, str) and not 1 <= len(event_id) <= 200:
            raise ValueError(f"must be 1 to 200 characters, got {len(event_id)}")
        return event_id


def event_model(feedback: Sequence[str]) -> type[EventBase]:
    """The event body of a run whose tasks read the feedback columns ``feedback``."""
    fields: dict[str, Any] = {
        name: (
            float | None,
            Field(None, allow_inf_nan=False, description=f"feedback: the run's {name!r} label"),
        )
        for name in feedback
        if name not in EventBase.model_fields
    }
    return create_model("Event", __base__=EventBase, **fields)


def events_request_model(feedback: Sequence[str]) -> type[BaseModel]:
    """The ``POST /events`` body: a batch of the run's events."""
    event = event_model(feedback)
    return create_model(
        "EventsRequest",
        __base__=Strict,
        events=(
            list[event],  # type: ignore[valid-type]
            Field(min_length=1, max_length=MAX_EVENTS, description="stored in one transaction"),
        ),
    )


class EventsResponse(BaseModel):
    received: int = Field(description="events in the request")
    stored: int = Field(description="of them, new to the log (committed before this answer)")
    duplicates: int = Field(description="of them, already stored under their event_id")


# -- reloading the run (issue 25) -----------------------------------------------------------------
class ReloadRequest(Strict):
    run: str | None = Field(
        None,
        description="the run directory to serve, as a path on the server (relative: to its "
        "working directory); null: the served run's path, read again",
    )


class ReloadResponse(BaseModel):
    run: str = Field(description="the run now served (absolute path)")
    previous: str = Field(description="the run it replaced, closed once its requests are answered")
    reloads: int = Field(description="runs swapped in since the service started")
    seconds: float = Field(description="how long loading and checking the new run took")
