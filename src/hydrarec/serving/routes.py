"""The endpoints, as two routers over one ``Recommender``: the API (behind the key, if any) and
the probes. ``/recommend`` goes through the ``MicroBatcher`` (the model runs in its thread); the
other handlers are plain ``def``, which FastAPI runs in its thread pool, off the event loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from hydrarec.io import read_json
from hydrarec.recommender import Recommendations, Recommender, UserQuery
from hydrarec.serving.batcher import MicroBatcher, Options
from hydrarec.serving.schemas import (
    MAX_K,
    Metadata,
    PairPrediction,
    PredictRequest,
    PredictResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    SimilarItem,
    SimilarResponse,
    Status,
    Support,
)


def api_router(rec: Recommender, batcher: MicroBatcher) -> APIRouter:
    router = APIRouter()

    @router.post("/recommend", response_model=RecommendResponse, response_model_exclude_none=True)
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        """Top-k items for one user (by id, history and / or features), with every task's
        prediction and, with ``explain``, the history items behind each."""
        query = UserQuery(body.user_id, body.history, body.features)
        options = Options.of(body.k, body.exclude_seen, body.allow, body.deny, body.explain)
        out = await batcher.recommend(query, options)
        return RecommendResponse(user_id=body.user_id, items=items_of(out, 0))

    @router.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest) -> PredictResponse:
        """Every task's prediction for each (user, item) pair of known ids."""
        users = [rec.user_key(p.user_id) for p in body.pairs]
        items = [rec.item_key(p.item_id) for p in body.pairs]
        preds = rec.predict(users, items)
        rows = [
            PairPrediction(
                user_id=p.user_id,
                item_id=p.item_id,
                predictions={t: float(v[j]) for t, v in preds.items()},
            )
            for j, p in enumerate(body.pairs)
        ]
        return PredictResponse(predictions=rows)

    @router.get("/items/{item_id}/similar", response_model=SimilarResponse)
    def similar(item_id: str, k: int = Query(10, ge=1, le=MAX_K)) -> SimilarResponse:
        """The k items nearest to ``item_id`` by cosine similarity of item vectors."""
        key = rec.item_key(item_id)
        ids, sims = rec.similar_items([key], k)
        items = [
            SimilarItem(item_id=_plain(i), similarity=float(s))
            for i, s in zip(ids[0], sims[0], strict=True)
        ]
        return SimilarResponse(item_id=_plain(key), items=items)

    @router.get("/metadata", response_model=Metadata)
    def metadata() -> Metadata:
        """What model this is: architecture, tasks, counts, training date, metrics."""
        return metadata_of(rec)

    return router


def probe_router(rec: Recommender) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Status)
    def healthz() -> Status:
        """Liveness: the process answers."""
        return Status(status="ok")

    @router.get("/readyz", response_model=Status)
    def readyz() -> Status:
        """Readiness: the model is loaded and the index holds every item."""
        detail = {"index": rec.index.kind, "indexed": len(rec.index), "items": rec.n_items}
        if len(rec.index) != rec.n_items:
            raise HTTPException(503, {"status": "not ready", **detail})
        return Status(status="ready", detail=detail)

    return router


def items_of(out: Recommendations, row: int) -> list[RecommendedItem]:
    """The filled slots of one user's recommendations as response items."""
    items = []
    for j in np.flatnonzero(out.items[row] >= 0):
        because = None
        if out.support is not None and out.support_ids is not None:
            sims = out.support_scores[row, j] if out.support_scores is not None else []
            because = [
                Support(item_id=_plain(i), similarity=float(s))
                for i, s in zip(out.support_ids[row, j], sims, strict=True)
                if i is not None and not math.isnan(float(s))
            ]
        items.append(
            RecommendedItem(
                item_id=_plain(out.ids[row, j]),
                score=float(out.scores[row, j]),
                predictions={t: float(p[row, j]) for t, p in out.predictions.items()},
                because=because,
            )
        )
    return items


def metadata_of(rec: Recommender) -> Metadata:
    meta = rec.run.meta
    cfg = rec.config
    path = rec.run.run.metrics
    metrics = read_json(path) if path.is_file() else {}
    model = {
        "architecture": cfg.model.architecture.name,
        "dim": cfg.model.dim,
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
