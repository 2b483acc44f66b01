"""The event log keeps every event it acknowledged (issue 25, Reliability): two processes writing
one SQLite file lose nothing, and a service killed with SIGKILL while a client streams 10,000
events has, after restart, every acknowledged event exactly once, in a log that opens cleanly;
the same with PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.live import free_port, served, wait_ready
from tests.integration.postgres_server import needs_postgres, postgres_server

from hydrarec.online import open_store

WRITER = """
import sys
from hydrarec.online import Event, open_store
store = open_store(sys.argv[1])
tag = sys.argv[2]
for j in range(100):
    batch = [Event(f"u{k}", f"i{j}", 1.7e9 + j, f"{tag}-{j}-{k}") for k in range(20)]
    assert store.append([batch]) == [20]
    if j % 10 == 0:  # a retry of the same request stores nothing
        assert store.append([batch]) == [0]
store.close()
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "events.db")
        return
    with postgres_server() as server:
        yield server.url


def test_two_processes_writing_one_log_lose_nothing(log: str) -> None:
    """Two writer processes on one SQLite file (SQLite serialises them; without busy_timeout
    one fails with "database is locked") or one PostgreSQL database."""
    open_store(log).close()  # created first, so both writers open an existing log
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, log, tag], stderr=subprocess.PIPE)
        for tag in ("a", "b")
    ]
    for w in writers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()
    ids = _stored_ids(log)
    assert len(ids) == 4000 and set(ids) == {
        f"{tag}-{j}-{k}" for tag in "ab" for j in range(100) for k in range(20)
    }


def _stored_ids(log: str) -> list[str]:
    store = open_store(log)
    try:
        return [row[1] for chunk in store.rows() for row in chunk]
    finally:
        store.close()


TOTAL, BATCH, CLIENTS = 10_000, 50, 4


def _stream(url: str, client: int, acked: list[str], stop: threading.Event) -> None:
    """Send this client's share of the events, batch by batch, until the service dies; the
    ids of every batch answered 2xx go to ``acked``."""
    share = TOTAL // CLIENTS
    with httpx.Client(base_url=url, timeout=30) as http:
        for start in range(0, share, BATCH):
            ids = [f"c{client}-{n}" for n in range(start, start + BATCH)]
            events = [
                {"user_id": n % 7, "item_id": n % 11, "event_id": i} for n, i in enumerate(ids)
            ]
            try:
                r = http.post("/events", json={"events": events})
            except httpx.TransportError:
                return  # killed
            if r.is_success:
                acked.extend(ids)
            if stop.is_set():
                return


@pytest.mark.slow
def test_every_acknowledged_event_survives_kill_9(tiny_run: Path, log: str, tmp_path: Path) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "hydrarec",
        "serve",
        str(tiny_run),
        "--port",
        str(port),
        "--events",
        log,
        "--model-processes",
        "0",
        "--no-access-log",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server_log = tmp_path / "server.log"
    with open(server_log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    stop = threading.Event()
    try:
        wait_ready(url, proc, server_log)
        clients = [
            threading.Thread(target=_stream, args=(url, c, acked, stop)) for c in range(CLIENTS)
        ]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 120
        while len(acked) < TOTAL // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()  # SIGKILL: no shutdown code runs, mid-stream
        proc.wait(timeout=30)
        stop.set()
        for c in clients:
            c.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert TOTAL // 3 <= len(acked) < TOTAL, "the kill must land mid-stream"
    if not log.startswith("postgresql://"):
        with sqlite3.connect(log) as conn:  # the file opens cleanly after the crash
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = _stored_ids(log)
    assert len(stored) == len(set(stored))  # none twice
    assert set(acked) <= set(stored)  # every acknowledged event is there
    # restarted on the same log, the clients retry everything: each event ends up stored once
    with served(tiny_run, "--events", log, "--model-processes", "0") as url:
        assert httpx.get(f"{url}/readyz").json()["detail"]["events"] == "available"
        for c in range(CLIENTS):
            _stream(url, c, [], threading.Event())
    assert sorted(_stored_ids(log)) == sorted(
        f"c{c}-{n}" for c in range(CLIENTS) for n in range(TOTAL // CLIENTS)
    )
