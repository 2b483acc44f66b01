"""Hostile and sloppy request bodies (issue 21, defects 5 and 10), through both ways into the
service: the fast lane (``serving/fast_lane.py``) and the FastAPI route it hands refusals to.
Every refusal is a 401 or a 422 naming the field, in valid JSON; never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.integration.tiny import AUTH, KEY

from hydrarec.recommend.recommender import Recommender
from hydrarec.serving import create_app

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module", params=[True, False], ids=["fast_lane", "fastapi"])
def client(request: pytest.FixtureRequest, rec: Recommender) -> Iterator[TestClient]:
    app = create_app(rec, api_key=KEY, max_body_bytes=4096, fast_lane=request.param)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def strict_json(r: httpx.Response) -> Any:
    """The body as RFC 8259 JSON: a NaN or Infinity literal in it fails the test."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in the answer: not JSON")

    return json.loads(r.text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("raw_k", "echoed"),
    [
        ('"10"', "10"),
        ("true", True),
        ("2.5", 2.5),
        ("2.0", 2.0),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
    ],
)
def test_k_of_another_type_is_422_naming_k(client: TestClient, raw_k: str, echoed: Any) -> None:
    body = f'{{"user_id": 1, "k": {raw_k}}}'.encode()
    r = client.post("/recommend", content=body, headers={**AUTH, **JSON})
    assert r.status_code == 422
    (error,) = strict_json(r)["detail"]
    assert error["loc"] == ["body", "k"] and error["input"] == echoed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"user_id": 1, "exclude_seen": "true"}', "exclude_seen"),
        (b'{"user_id": 1, "explain": 1}', "explain"),
        (b'{"user_id": NaN}', "user_id"),
        (b'{"history": [1, Infinity]}', "history"),
        (b'{"user_id": 1, "allow": [2.0]}', "allow"),
    ],
)
def test_other_fields_are_strict_too(client: TestClient, body: bytes, field: str) -> None:
    r = client.post("/recommend", content=body, headers={**AUTH, **JSON})
    assert r.status_code == 422
    assert {e["loc"][1] for e in strict_json(r)["detail"]} == {field}


def test_predict_pairs_with_nan_ids_are_422(client: TestClient) -> None:
    body = b'{"pairs": [{"user_id": NaN, "item_id": 1}]}'
    r = client.post("/predict", content=body, headers={**AUTH, **JSON})
    assert r.status_code == 422
    assert strict_json(r)["detail"][0]["loc"][:4] == ["body", "pairs", 0, "user_id"]


@pytest.mark.parametrize(
    ("features", "name"),
    [
        ('{"age": "old"}', "age"),  # numeric
        ('{"age": [1]}', "age"),
        ('{"segment": {"a": 1}}', "segment"),  # categorical: was a 500 (unhashable dict)
    ],
)
def test_a_feature_of_the_wrong_type_is_422_naming_it(
    client: TestClient, features: str, name: str
) -> None:
    body = f'{{"user_id": 1, "features": {features}}}'.encode()
    r = client.post("/recommend", content=body, headers={**AUTH, **JSON})
    assert r.status_code == 422
    assert strict_json(r)["detail"].startswith(f"field {name!r}: ")


@pytest.mark.parametrize(
    "body",
    [b'{"user_id": ', b"not json", b'{"user_id": 1, "k": NaN}', b'{"user_id": 1}', b" " * 5000],
    ids=["truncated", "not_json", "nan", "valid", "over_the_limit"],
)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}], ids=["no_key", "wrong_key"])
def test_without_the_key_every_body_is_401_before_it_is_read(
    client: TestClient, body: bytes, headers: dict
) -> None:
    r = client.post("/recommend", content=body, headers={**headers, **JSON})
    assert r.status_code == 401
    assert strict_json(r) == {"detail": "missing or wrong X-API-Key"}
    assert r.headers["www-authenticate"] == "APIKey"


def test_without_the_key_only_probes_and_docs_answer(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    for path in ("/metadata", "/items/3/similar", "/no/such/path"):
        assert client.get(path).status_code == 401, path
    r = client.post("/predict", content=b'{"pairs": [', headers=JSON)
    assert r.status_code == 401
