"""``hydrarec serve RUN --events LOG`` in-process (issue 25): ``POST /events`` and ``/recommend``
reading the user's logged events at once, bad events refused, and a log that is unavailable."""

from __future__ import annotations

import json
import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.integration.tiny import AUTH, KEY

from hydrarec.online import open_store
from hydrarec.recommend.recommender import Recommender, UserQuery
from hydrarec.serving import create_app
from hydrarec.serving.schemas import MAX_EVENTS

NOW = time.time()


def service(rec: Recommender, log: Path, **options: Any) -> TestClient:
    return TestClient(create_app(rec, api_key=KEY, events=str(log), **options))


@pytest.fixture
def client(rec: Recommender, tmp_path: Path) -> Iterator[TestClient]:
    with service(rec, tmp_path / "events.db") as c:
        yield c


def unseen_items(rec: Recommender, user: int, n: int) -> list[int]:
    """``n`` items the run never saw ``user`` with."""
    u = int(rec.user_index([user])[0])
    seen = set(rec.known.items[rec.known.indptr[u] : rec.known.indptr[u + 1]].tolist())
    fresh = [i for i in range(rec.n_items) if i not in seen][:n]
    return [int(x) for x in rec.raw_items(np.array(fresh))]


def post_events(client: TestClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = client.post("/events", json={"events": events}, headers=AUTH)
    assert r.status_code == 200, r.text
    return dict(r.json())


def recommend(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/recommend", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("fast_lane", [True, False])
def test_events_change_the_next_recommendation(
    rec: Recommender, tmp_path: Path, fast_lane: bool
) -> None:
    user = int(rec.run.user_ids.raw_ids[3])
    items = unseen_items(rec, user, 4)
    with service(rec, tmp_path / "events.db", fast_lane=fast_lane) as client:
        before = recommend(client, user_id=user, k=40, exclude_seen=False)
        assert before["events"] == {"used": 0, "not_in_catalogue": 0, "available": True}
        # posted out of time order: the history is read by timestamp
        events = [
            {"user_id": user, "item_id": i, "timestamp": NOW - 100 + j} for j, i in enumerate(items)
        ]
        assert post_events(client, events[2:] + events[:2])["stored"] == 4
        after = recommend(client, user_id=user, k=40, exclude_seen=False)
        seen_now = recommend(client, user_id=user, k=10)
    assert after["events"] == {"used": 4, "not_in_catalogue": 0, "available": True}
    # the oracle: the library with the events as the user's latest history, in time order
    want = rec.recommend([UserQuery(user, history=items)], k=40, exclude_seen=False)
    got = {it["item_id"]: it["score"] for it in after["items"]}
    oracle = dict(zip(want.ids[0].tolist(), want.scores[0].tolist(), strict=True))
    assert got == pytest.approx(oracle, rel=1e-5)
    unordered = rec.recommend([UserQuery(user, history=items[::-1])], 40, exclude_seen=False)
    assert not np.allclose(np.sort(unordered.scores[0]), np.sort(want.scores[0]))  # order counts
    assert [it["score"] for it in before["items"]] != [it["score"] for it in after["items"]]
    # exclude_seen (the run's default) excludes the logged items too
    assert not {it["item_id"] for it in seen_now["items"]} & set(items)


def test_a_user_the_run_never_saw_is_served_from_events(
    client: TestClient, rec: Recommender
) -> None:
    r = client.post("/recommend", json={"user_id": "newcomer"}, headers=AUTH)
    assert r.status_code == 404  # nothing to go on yet
    items = [int(i) for i in rec.run.item_ids.raw_ids[:3]]
    post_events(client, [{"user_id": "newcomer", "item_id": i} for i in items])
    answer = recommend(client, user_id="newcomer", k=5)
    assert answer["events"]["used"] == 3
    want = rec.recommend([UserQuery(history=items)], k=5)
    assert [it["item_id"] for it in answer["items"]] == want.ids[0].tolist()


def test_items_the_run_does_not_know_are_logged_and_counted(
    client: TestClient, rec: Recommender, tmp_path: Path
) -> None:
    user = int(rec.run.user_ids.raw_ids[0])
    known = int(rec.run.item_ids.raw_ids[5])
    events = [{"user_id": user, "item_id": i} for i in (known, 99_999, "not-an-id", "05")]
    assert post_events(client, events) == {"received": 4, "stored": 4, "duplicates": 0}
    answer = recommend(client, user_id=str(user))  # "3" and 3 are one user of this run
    assert answer["events"] == {"used": 1, "not_in_catalogue": 3, "available": True}
    store = open_store(tmp_path / "events.db")  # every event is in the log
    assert store.user_items(str(user), 10) == [str(known), "99999", "not-an-id", "05"]
    store.close()


def test_retried_requests_store_once(client: TestClient) -> None:
    events = [{"user_id": 1, "item_id": 2, "event_id": f"req-7/{j}"} for j in range(5)]
    assert post_events(client, events) == {"received": 5, "stored": 5, "duplicates": 0}
    assert post_events(client, events) == {"received": 5, "stored": 0, "duplicates": 5}


@pytest.mark.parametrize(
    ("event", "field", "says"),
    [
        ({"colour": 3}, "colour", "Extra inputs are not permitted"),
        ({"rating": float("nan")}, "rating", "finite number"),  # sent as the token NaN
        ({"rating": "5"}, "rating", "valid number"),
        ({"timestamp": NOW + 3 * 86_400}, "timestamp", "after the server's clock"),
        ({"timestamp": (NOW + 86_400) * 1000}, "timestamp", "not milliseconds"),
        ({"timestamp": 86_400}, "timestamp", "before 1990"),
        ({"event_id": "x" * 201}, "event_id", "1 to 200 characters"),
        ({"item_id": None}, "item_id", "valid"),
    ],
)
def test_bad_events_are_422_naming_the_field(
    client: TestClient, event: dict[str, Any], field: str, says: str
) -> None:
    body = {"user_id": 1, "item_id": 2, **event}
    raw = json.dumps({"events": [body]})  # NaN as Python's json writes it
    r = client.post("/events", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][:4] == ["body", "events", 0, field] and says in detail["msg"]


def test_batches_have_a_maximum(rec: Recommender, tmp_path: Path) -> None:
    with service(rec, tmp_path / "events.db", max_body_bytes=4 << 20) as client:
        events = [{"user_id": 1, "item_id": 2}] * (MAX_EVENTS + 1)
        r = client.post("/events", json={"events": events}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events"]
        r = client.post("/events", json={"events": []}, headers=AUTH)
        assert r.status_code == 422
        assert client.post("/events", json={"events": events[:5]}).status_code == 401  # no key


def test_a_corrupt_log_leaves_recommend_answering(rec: Recommender, tmp_path: Path) -> None:
    log = tmp_path / "events.db"
    log.write_bytes(b"this is no database " * 500)
    user = int(rec.run.user_ids.raw_ids[1])
    with service(rec, log) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "file is not a database" in ready.json()["detail"]["events_error"]
        answer = recommend(client, user_id=user, k=5)
        assert answer["events"]["available"] is False
        ids, _ = rec.recommend([user], k=5)  # the run alone
        assert [it["item_id"] for it in answer["items"]] == ids[0].tolist()
        r = client.post("/events", json={"events": [{"user_id": 1, "item_id": 2}]}, headers=AUTH)
        assert r.status_code == 503 and "nothing stored" in r.json()["detail"]
    assert log.read_bytes().startswith(b"this is no database")  # never overwritten


def test_a_full_disk_is_503_then_recovers(rec: Recommender, tmp_path: Path) -> None:
    """A full disk simulated by a file-size limit (RLIMIT_FSIZE) on this process."""
    user = int(rec.run.user_ids.raw_ids[2])
    with service(rec, tmp_path / "events.db") as client:
        post_events(client, [{"user_id": user, "item_id": 1}])
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limit[1]))
        try:
            big = [
                {"user_id": user, "item_id": 2, "event_id": "x" * 150 + str(j)} for j in range(500)
            ]
            r = client.post("/events", json={"events": big}, headers=AUTH)
            ready = client.get("/readyz").json()
            answer = recommend(client, user_id=user, k=5)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)
            signal.signal(signal.SIGXFSZ, handler)
        assert r.status_code == 503 and "I/O error" in r.json()["detail"], r.text[:500]
        assert ready["status"] == "degraded" and "cannot write" in ready["detail"]["events_error"]
        assert answer["events"]["used"] == 1  # reads still work
        assert post_events(client, big)["stored"] == 500  # room again: nothing was lost
        assert client.get("/readyz").json()["status"] == "ready"
