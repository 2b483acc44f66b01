"""The endpoints, as two routers over the served run (``ServedRun``): the API (behind the key,
if any) and the probes. ``/recommend`` goes through the run's ``MicroBatcher`` (the model runs
in its thread or its model processes); the other handlers are plain ``def``, which FastAPI runs
in its thread pool, off the event loop. Each request holds the run it started with until it is
answered, so a reload (``served.py``) never changes the model under a request.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel
from pydantic_core import to_json

from hydrarec.errors import DataError, UnknownIdError
from hydrarec.io.atomic import read_json
from hydrarec.recommend.recommender import Recommendations, Recommender, UserQuery
from hydrarec.serving.batcher import Options
from hydrarec.serving.event_log import EventHistory, EventLog
from hydrarec.serving.schemas import (
    MAX_K,
    Metadata,
    PairPrediction,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarItem,
    SimilarResponse,
    Status,
)

if TYPE_CHECKING:  # served.py imports this module (through event_routes.py)
    from hydrarec.serving.served import ServedRun


class ErrorAnswer(BaseModel):
    """An error's answer: what was wrong, in words (a refused body: each field, as FastAPI lists
    them; ``/readyz``: what the index holds)."""

    detail: str | list[dict[str, Any]] | dict[str, Any]


_ERRORS = {
    400: "a body that cannot be read as JSON text (not UTF-8)",
    401: "missing or wrong X-API-Key",
    404: "an unknown user or item id, named",
    408: "the request body did not arrive in time (--body-timeout)",
    409: "the run does not fit this service (POST /admin/reload)",
    413: "the request body is over --max-body-bytes",
    422: "a body or parameter the schema refuses, naming the field, or input the model cannot use",
    503: "not ready: the index does not hold every item",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses (the schema documents every answer the
    service gives, which the schemathesis test checks)."""
    return {s: {"model": ErrorAnswer, "description": _ERRORS[s]} for s in statuses}


BODY_ERRORS = errors(400, 404, 408, 413, 422)  # of a POST with a body that names ids


def api_router(served: ServedRun) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/recommend",
        response_model=RecommendResponse,
        response_model_exclude_none=True,
        responses=BODY_ERRORS,
    )
    async def recommend(body: RecommendRequest) -> Response:
        """Top-k items for one user (by id, history and / or features), with every task's
        prediction and, with ``explain``, the history items behind each. With an event log,
        the user's logged events extend their history (``events`` says how many)."""
        with served.hold() as run:
            query, options, events = await recommend_query_with_events(body, run.history)
            out = await run.batcher.recommend(query, options)
        return Response(recommend_body(body, out, events), media_type="application/json")

    @router.post("/predict", response_model=PredictResponse, responses=BODY_ERRORS)
    def predict(body: PredictRequest) -> PredictResponse:
        """Every task's prediction for each (user, item) pair of known ids."""
        with served.hold() as run:
            users = [run.rec.user_key(p.user_id) for p in body.pairs]
            items = [run.rec.item_key(p.item_id) for p in body.pairs]
            preds = run.rec.predict(users, items)
        rows = [
            PairPrediction(
                user_id=p.user_id,
                item_id=p.item_id,
                predictions={t: float(v[j]) for t, v in preds.items()},
            )
            for j, p in enumerate(body.pairs)
        ]
        return PredictResponse(predictions=rows)

    @router.get(
        "/items/{item_id}/similar", response_model=SimilarResponse, responses=errors(404, 422)
    )
    def similar(item_id: str, k: int = Query(10, ge=1, le=MAX_K)) -> SimilarResponse:
        """The k items nearest to ``item_id`` by cosine similarity of item vectors."""
        with served.hold() as run:
            key = run.rec.item_key(item_id)
            ids, sims = run.rec.similar_items([key], k)
        items = [
            SimilarItem(item_id=_plain(i), similarity=float(s))
            for i, s in zip(ids[0], sims[0], strict=True)
        ]
        return SimilarResponse(item_id=_plain(key), items=items)

    @router.get("/metadata", response_model=Metadata)
    def metadata() -> Metadata:
        """What model this is: architecture, tasks, counts, training date, metrics."""
        return metadata_of(served.current.rec)

    return router


def probe_router(served: ServedRun, events: EventLog | None = None) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Status)
    def healthz() -> Status:
        """Liveness: the process answers."""
        return Status(status="ok")

    @router.get("/readyz", response_model=Status, responses=errors(503))
    def readyz() -> Status:
        """Readiness: the model is loaded and the index holds every item; ``run`` says which
        run is served, ``serving_since`` since when, ``reloads`` how many runs were swapped in
        since the start. With an event log, ``degraded`` (still 200: ``/recommend`` answers from
        the run alone) while the log is unavailable, and ``events_error`` says why."""
        rec = served.current.rec
        detail: dict[str, Any] = {
            **served.status(),
            "index": rec.index.kind,
            "indexed": len(rec.index),
            "items": rec.n_items,
        }
        if len(rec.index) != rec.n_items:
            raise HTTPException(503, {"status": "not ready", **detail})
        if events is not None:
            detail.update(events.probe())
            if not events.available:
                return Status(status="degraded", detail=detail)
        return Status(status="ready", detail=detail)

    return router


def recommend_query(body: RecommendRequest) -> tuple[UserQuery, Options]:
    """What the batcher needs of a ``/recommend`` body."""
    query = UserQuery(body.user_id, body.history, body.features)
    return query, Options.of(body.k, body.exclude_seen, body.allow, body.deny, body.explain)


async def recommend_query_with_events(
    body: RecommendRequest, history: EventHistory | None
) -> tuple[UserQuery, Options, dict[str, Any] | None]:
    """``recommend_query``, the user's logged events added to the history when the service
    has an event log (and what ``/recommend`` says of them; None without a log)."""
    query, options = recommend_query(body)
    if history is None:
        return query, options, None
    query, events = await history.extend(query)
    return query, options, events


def recommend_body(
    body: RecommendRequest, out: Recommendations, events: dict[str, Any] | None = None
) -> bytes:
    """The ``RecommendResponse`` JSON of one user's recommendations (no ``user_id`` for a user
    given only by history or features, as the response model leaves out what is None; no
    ``events`` without an event log)."""
    answer: dict[str, Any] = {} if body.user_id is None else {"user_id": body.user_id}
    answer["items"] = items_of(out, 0)
    if events is not None:
        answer["events"] = events
    return json_body(answer)


def error_answer(exc: Exception) -> tuple[int, bytes] | None:
    """The documented answer to an error of the model: 404 naming an unknown id, 422 for bad
    input data (e.g. an unknown feature); None for anything else (a 500)."""
    if isinstance(exc, UnknownIdError):
        return 404, json_body({"detail": str(exc)})
    if isinstance(exc, DataError):
        return 422, json_body({"detail": str(exc)})
    return None


def items_of(out: Recommendations, row: int) -> list[dict[str, Any]]:
    """The filled slots of one user's recommendations, as ``RecommendedItem`` JSON objects."""
    if (out.items[row] >= 0).all():  # every slot filled (the usual case): whole rows, no gather
        filled: Any = slice(None)
    else:
        filled = np.flatnonzero(out.items[row] >= 0)
    raw = out.ids[row, filled]
    # numeric ids come out of tolist() as Python ints; an object array may hold numpy scalars
    ids = [_plain(i) for i in raw] if raw.dtype == object else raw.tolist()
    scores = out.scores[row, filled].tolist()
    preds = {t: p[row, filled].tolist() for t, p in out.predictions.items()}
    items: list[dict[str, Any]] = [
        {"item_id": i, "score": s, "predictions": {t: p[j] for t, p in preds.items()}}
        for j, (i, s) in enumerate(zip(ids, scores, strict=True))
    ]
    if out.support is not None and out.support_ids is not None and out.support_scores is not None:
        for item, j in zip(items, np.arange(out.items.shape[1])[filled], strict=True):
            item["because"] = [
                {"item_id": _plain(i), "similarity": float(s)}
                for i, s in zip(out.support_ids[row, j], out.support_scores[row, j], strict=True)
                if i is not None and not math.isnan(float(s))
            ]
    return items


def json_body(content: Any) -> bytes:
    """``content`` (plain JSON types) serialised by pydantic's Rust encoder, NaN and infinities
    as ``null`` (as pydantic models write them). The hot path builds its answers this way instead
    of through response-model objects, which FastAPI would validate and encode again."""
    return to_json(content, inf_nan_mode="null")


def metadata_of(rec: Recommender) -> Metadata:
    meta = rec.run.meta
    cfg = rec.config
    path = rec.run.run.metrics
    metrics = read_json(path) if path.is_file() else {}
    model = {
        "architecture": cfg.model.architecture.name,
        "dim": cfg.model.dim,
        "ensemble": cfg.model.ensemble,  # members; vectors are ensemble x dim wide
        "sequence": cfg.model.sequence.kind,
        "parameters": meta.get("parameters"),
    }
    counts = {
        "users": len(rec.run.user_ids),
        "items": rec.n_items,
        "interactions": meta.get("split_sizes", {}),
    }
    return Metadata(
        model=model,
        tasks=rec.tasks,
        dataset=meta.get("dataset"),
        counts=counts,
        trained=meta.get("created"),
        hydrarec_version=meta.get("hydrarec_version"),
        index=rec.index.kind,
        blend=rec.blend,
        metrics=metrics,
    )


def _plain(v: Any) -> Any:
    """numpy scalars -> int / str for JSON."""
    return v.item() if isinstance(v, np.generic) else v
