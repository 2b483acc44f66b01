"""The event log in PostgreSQL (issue 25), against a throwaway server started with ``initdb`` and
``pg_ctl`` (skipped only where PostgreSQL's binaries are absent; ``.ci/run`` installs them): the
store's round trip and idempotency, the service on it, and a server that goes away and comes
back. The kill test and two writer processes run on PostgreSQL in test_events_durability.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.integration.live import free_port
from tests.integration.postgres_server import PostgresServer, needs_postgres, postgres_server
from tests.integration.tiny import AUTH, KEY

from hydrarec.online import Event, EventStoreError, export_events, open_store
from hydrarec.recommend.recommender import Recommender
from hydrarec.serving import create_app

pytestmark = needs_postgres
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as s:
        yield s


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    """The server's URL, its event tables dropped after each test."""
    yield server.url
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS hydrarec_events, hydrarec_event_log")


def test_round_trip_and_idempotency(url: str, tmp_path: Path) -> None:
    store = open_store(url)
    first = [Event("u", "b", T0 + 20, "e1"), Event("u", "a", T0 + 10, None, {"rating": 4.0})]
    second = [Event("v", "z", T0, "e2"), Event("u", "c", T0 + 20, "e1")]  # e1 within the group
    assert store.append([first, second]) == [2, 1]
    assert store.append([first]) == [1]  # e1 again is skipped, the anonymous event is new
    assert store.user_items("u", 10) == ["a", "a", "b"]
    assert store.user_items("u", 1) == ["b"]
    store.close()
    assert open_store(url).count() == 4  # another connection sees every committed event
    assert export_events(url, tmp_path / "events.parquet") == 4


def test_refused_and_unreachable_servers(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hydrarec_events (id int)")
    with pytest.raises(EventStoreError, match="hydrarec did not create"):
        open_store(url)
    dead = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(EventStoreError, match="connection failed") as e:
        open_store(dead)
    assert "secret" not in str(e.value) and "postgres:***@" in str(e.value)


def test_the_service_rides_out_a_server_restart(
    server: PostgresServer, url: str, rec: Recommender
) -> None:
    user = int(rec.run.user_ids.raw_ids[0])
    item = int(rec.run.item_ids.raw_ids[7])
    event = {"events": [{"user_id": user, "item_id": item, "event_id": "one"}]}
    with TestClient(create_app(rec, api_key=KEY, events=url)) as client:
        assert client.post("/events", json=event, headers=AUTH).json()["stored"] == 1
        answer = client.post("/recommend", json={"user_id": user}, headers=AUTH)
        assert answer.json()["events"]["used"] == 1
        server.stop()
        try:
            r = client.post("/events", json=event, headers=AUTH)
            assert r.status_code == 503 and "nothing stored" in r.json()["detail"]
            answer = client.post("/recommend", json={"user_id": user}, headers=AUTH)
            assert answer.status_code == 200 and answer.json()["events"]["available"] is False
            assert client.get("/readyz").json()["status"] == "degraded"
        finally:
            server.start()
        # broken connections are dropped with their error; the next call opens new ones
        assert client.post("/events", json=event, headers=AUTH).json()["duplicates"] == 1
        assert client.get("/readyz").json()["status"] == "ready"


def test_a_service_whose_server_is_down_at_start(rec: Recommender) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with TestClient(create_app(rec, api_key=KEY, events=dead)) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert "connection failed" in ready["detail"]["events_error"]
        user = int(rec.run.user_ids.raw_ids[0])
        r = client.post("/recommend", json={"user_id": user, "k": 3}, headers=AUTH)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
