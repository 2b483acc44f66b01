"""Request and response bodies of the HTTP service (pydantic; they are the OpenAPI schema).

Request bodies are strict (issue 21): every field takes only its own JSON type, so ``"10"``,
``true``, ``2.0`` and ``NaN`` are not a ``k`` and ``"true"`` is not a boolean; each is a 422 naming
the field. Raw ids are JSON integers or strings, matched to the run's id type by the one rule of
``Recommender.user_key`` (``"42"`` finds user 42 in a run with integer ids, ``"042"`` does not).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

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


class RecommendResponse(BaseModel):
    # left out for a user given only by history or features (it was required in the schema,
    # found by the schemathesis test, issue 21)
    user_id: RawId | None = None
    items: list[RecommendedItem]


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
