"""The HTTP service: every endpoint and every bad input in-process (TestClient), and once as a real
uvicorn process on a free loopback port (``hydrarec serve``), queried over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.integration.live import served
from tests.integration.tiny import AUTH, KEY

from hydrarec.errors import ConfigError, UnknownIdError
from hydrarec.recommend.recommender import Recommendations, Recommender, UserQuery
from hydrarec.serving import create_app
from hydrarec.serving.batcher import MicroBatcher, Options
from hydrarec.serving.server import ENV_KEY_NAME, ENV_RUN, app_from_env


@pytest.fixture(scope="module")
def client(rec: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(rec, api_key=KEY, max_body_bytes=4096)) as c:
        yield c


def user_with_unseen(rec: Recommender) -> int:
    counts = rec.known.indptr[1:] - rec.known.indptr[:-1]
    return int(rec.run.user_ids.raw_ids[int(counts.argmin())])


# -- endpoints ------------------------------------------------------------------------------------
def test_recommend_matches_the_library(client: TestClient, rec: Recommender) -> None:
    user = user_with_unseen(rec)
    r = client.post("/recommend", json={"user_id": user, "k": 5}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    ids, scores = rec.recommend([user], k=5)
    assert [it["item_id"] for it in body["items"]] == ids[0].tolist()
    assert [it["score"] for it in body["items"]] == pytest.approx(scores[0].tolist(), rel=1e-5)
    assert set(body["items"][0]["predictions"]) == {"retrieval", "rating", "like"}
    assert "because" not in body["items"][0]


def test_recommend_with_explanations_and_lists(client: TestClient, rec: Recommender) -> None:
    user = user_with_unseen(rec)
    allow = [int(i) for i in rec.run.item_ids.raw_ids[:15]]
    r = client.post(
        "/recommend",
        headers=AUTH,
        json={
            "user_id": str(user),
            "k": 3,
            "explain": True,
            "exclude_seen": False,
            "allow": allow,
            "deny": allow[:2],
        },
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 3 and all(it["item_id"] in allow[2:] for it in items)
    assert all(1 <= len(it["because"]) <= 3 for it in items)
    assert all(-1.0 <= b["similarity"] <= 1.0 for it in items for b in it["because"])


def test_recommend_for_a_cold_user(client: TestClient, rec: Recommender) -> None:
    history = [int(i) for i in rec.run.item_ids.raw_ids[:4]]
    r = client.post("/recommend", json={"history": history, "k": 4}, headers=AUTH)
    assert r.status_code == 200, r.text
    got = [it["item_id"] for it in r.json()["items"]]
    assert got == rec.recommend([UserQuery(history=history)], k=4).ids[0].tolist()
    assert not set(got) & set(history)
    r = client.post("/recommend", json={"features": {"age": 40, "segment": "s2"}}, headers=AUTH)
    assert r.status_code == 200 and len(r.json()["items"]) == 10


def test_predict(client: TestClient, rec: Recommender) -> None:
    pairs = [{"user_id": 1, "item_id": 2}, {"user_id": "3", "item_id": "4"}]
    r = client.post("/predict", json={"pairs": pairs}, headers=AUTH)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    expected = rec.predict([1, 3], [2, 4])
    assert [p["predictions"]["rating"] for p in preds] == pytest.approx(
        expected["rating"].tolist(), rel=1e-5
    )
    assert preds[1]["user_id"] == "3"  # echoed as sent


def test_similar_items(client: TestClient, rec: Recommender) -> None:
    r = client.get("/items/3/similar", params={"k": 4}, headers=AUTH)
    assert r.status_code == 200, r.text
    ids, sims = rec.similar_items([3], 4)
    body = r.json()
    assert body["item_id"] == 3
    assert [i["item_id"] for i in body["items"]] == ids[0].tolist()
    assert [i["similarity"] for i in body["items"]] == pytest.approx(sims[0].tolist(), rel=1e-5)


def test_probes_metadata_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["detail"]["indexed"] == 40
    meta = client.get("/metadata", headers=AUTH).json()
    assert meta["tasks"] == {
        "retrieval": "retrieval",
        "rating": "rating",
        "like": "binary",
        "genres": "reconstruction",
    }
    assert meta["counts"]["users"] == 60 and meta["counts"]["items"] == 40
    assert meta["model"]["architecture"] == "mmoe" and meta["trained"]
    assert "retrieval/ndcg@10" in meta["metrics"]["test"] and meta["index"] == "exact"
    assert client.get("/docs").status_code == 200
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_concurrent_requests_share_a_batch_and_keep_their_own_errors(rec: Recommender) -> None:
    batcher = MicroBatcher(rec, max_batch=64)
    sizes: list[int] = []
    score = batcher._score

    async def spy(options: Options, members: list) -> Recommendations:
        sizes.append(len(members))
        return await score(options, members)

    batcher._score = spy  # type: ignore[method-assign]
    users = [int(u) for u in rec.run.user_ids.raw_ids[:12]]
    opts = Options.of(5, None, None, None, True)

    async def go() -> list:
        queries = [UserQuery(user_id=u) for u in users] + [UserQuery(user_id=987654)]
        return await asyncio.gather(
            *(batcher.recommend(q, opts) for q in queries), return_exceptions=True
        )

    results = asyncio.run(go())
    batcher.close()
    assert sizes[0] == 13 and sizes[1:] == [1] * 13  # one batch; it failed, so one by one
    assert isinstance(results[-1], UnknownIdError) and "987654" in str(results[-1])
    alone = rec.recommend([UserQuery(user_id=u) for u in users], 5, explain=True)
    for r, out in enumerate(results[:-1]):
        assert out.ids.tolist() == alone.ids[r : r + 1].tolist()
        assert out.support.tolist() == alone.support[r : r + 1].tolist()


# -- bad input ------------------------------------------------------------------------------------
def test_unknown_ids_are_404_naming_the_id(client: TestClient) -> None:
    r = client.post("/recommend", json={"user_id": 987654}, headers=AUTH)
    assert r.status_code == 404 and "987654" in r.json()["detail"]
    r = client.post("/recommend", json={"history": [1, 55555]}, headers=AUTH)
    assert r.status_code == 404 and "55555" in r.json()["detail"]
    r = client.post("/predict", json={"pairs": [{"user_id": 987654, "item_id": 1}]}, headers=AUTH)
    assert r.status_code == 404 and "987654" in r.json()["detail"]
    r = client.get("/items/nope/similar", headers=AUTH)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


@pytest.mark.parametrize("k", [0, 1001, -3])
def test_k_outside_1_to_1000_is_422(client: TestClient, k: int) -> None:
    r = client.post("/recommend", json={"user_id": 1, "k": k}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "k"]
    r = client.get("/items/3/similar", params={"k": k}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "k"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"user_id": 1, "k": "many"}, "k"),
        ({"user_id": 1, "history": "1,2"}, "history"),
        ({"user_id": 1, "explain": "perhaps"}, "explain"),
        ({"user_id": 1, "colour": "red"}, "colour"),
    ],
)
def test_wrong_types_are_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/recommend", json=body, headers=AUTH)
    assert r.status_code == 422
    assert any(err["loc"][1] == field for err in r.json()["detail"])


def test_malformed_json_and_empty_requests_are_422(client: TestClient) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    r = client.post("/recommend", content=b'{"user_id": ', headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = client.post("/recommend", json={"k": 3}, headers=AUTH)
    assert r.status_code == 422 and "user_id, history or features" in r.text
    r = client.post("/predict", json={"pairs": [{"user_id": 1}]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pairs", 0, "item_id"]
    r = client.post("/recommend", json={"features": {"height": 2}}, headers=AUTH)
    assert r.status_code == 422 and "height" in r.json()["detail"]


def test_bodies_over_the_limit_are_413(client: TestClient) -> None:
    r = client.post("/recommend", json={"history": list(range(2000))}, headers=AUTH)
    assert r.status_code == 413
    chunks = (b" " * 1000 for _ in range(10))  # no Content-Length: counted while read
    r = client.post(
        "/recommend", content=chunks, headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_missing_or_wrong_api_key_is_401(client: TestClient, headers: dict) -> None:
    assert client.post("/recommend", json={"user_id": 1}, headers=headers).status_code == 401
    assert client.get("/metadata", headers=headers).status_code == 401
    assert client.get("/items/3/similar", headers=headers).status_code == 401
    assert client.get("/healthz", headers=headers).status_code == 200  # probes stay open


def test_without_a_key_configured_no_key_is_needed(rec: Recommender) -> None:
    with TestClient(create_app(rec)) as c:
        assert c.post("/recommend", json={"user_id": 1, "k": 2}).status_code == 200


def test_the_worker_factory_reads_its_settings_from_the_environment(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_RUN, str(tiny_run))
    monkeypatch.setenv(ENV_KEY_NAME, "HYDRAREC_TEST_KEY")
    monkeypatch.setenv("HYDRAREC_TEST_KEY", KEY)
    with TestClient(app_from_env()) as c:
        assert c.post("/recommend", json={"user_id": 1}).status_code == 401
        assert c.post("/recommend", json={"user_id": 1}, headers=AUTH).status_code == 200
    monkeypatch.delenv("HYDRAREC_TEST_KEY")
    with pytest.raises(ConfigError, match="HYDRAREC_TEST_KEY"):
        app_from_env()  # a key was asked for and is missing: refuse to start open


# -- a real server --------------------------------------------------------------------------------
def test_hydrarec_serve_answers_over_http(tiny_run: Path) -> None:
    options = ("--api-key-env", "HYDRAREC_TEST_KEY")
    with (
        served(tiny_run, *options, env={"HYDRAREC_TEST_KEY": KEY}) as url,
        httpx.Client(base_url=url, timeout=10.0) as http,
    ):
        r = http.post("/recommend", json={"user_id": 1, "k": 3}, headers=AUTH)
        assert r.status_code == 200 and len(r.json()["items"]) <= 3
        assert http.post("/recommend", json={"user_id": 1}).status_code == 401
        assert http.get("/metadata", headers=AUTH).json()["counts"]["items"] == 40
