"""The service's fast paths give the same answers as the plain ones: the fast lane against the
FastAPI route, the model processes against the in-process ``Recommender``, parallel batches
against one at a time."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop
from fastapi.testclient import TestClient
from tests.integration.tiny import AUTH, KEY

from hydrarec.errors import RunError, UnknownIdError
from hydrarec.recommend.recommender import Recommendations, Recommender, UserQuery
from hydrarec.serving import app as app_module
from hydrarec.serving import create_app, fast_lane, model_process
from hydrarec.serving.app import Service
from hydrarec.serving.batcher import MicroBatcher, Options
from hydrarec.serving.model_process import MODEL_NICE, ModelPool, cpu_share


@pytest.fixture(scope="module")
def clients(rec: Recommender) -> Iterator[tuple[TestClient, TestClient]]:
    fast = create_app(rec, api_key=KEY, max_body_bytes=4096)
    plain = create_app(rec, api_key=KEY, max_body_bytes=4096, fast_lane=False)
    with TestClient(fast) as f, TestClient(plain) as p:
        yield f, p


def requests(rec: Recommender) -> list[tuple[dict[str, str], Any]]:
    """(headers, body) pairs: valid ones, then every kind of refusal."""
    items = [int(i) for i in rec.run.item_ids.raw_ids[:12]]
    json = {**AUTH, "content-type": "application/json"}
    return [
        (AUTH, {"user_id": 1, "k": 5}),
        (AUTH, {"user_id": 2, "k": 4, "explain": True, "allow": items, "deny": items[:2]}),
        (AUTH, {"history": items[:3], "k": 3, "exclude_seen": False}),
        ({**AUTH, "content-type": "application/vnd.api+json"}, {"user_id": 3}),
        (AUTH, {"user_id": 987654}),  # unknown: 404
        (AUTH, {"history": [1, 55555]}),  # unknown item: 404
        (AUTH, {"user_id": 1, "k": 0}),  # 422
        (AUTH, {"user_id": True}),  # 422
        (AUTH, {"k": 3}),  # nobody: 422
        (AUTH, {"features": {"height": 2}}),  # unknown feature: 422 from the model
        (json, b'{"user_id": '),  # malformed: 422
        ({**AUTH, "content-type": "text/plain"}, b'{"user_id": 1}'),  # not JSON: 422
        ({}, {"user_id": 1}),  # no key: 401
        ({"X-API-Key": "wrong"}, {"user_id": 1}),  # 401
        ([("X-API-Key", "wrong"), ("X-API-Key", KEY)], {"user_id": 1}),  # the first counts: 401
        (AUTH, {"history": items * 400}),  # over max_body_bytes: 413
    ]


def spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[tuple[Any, ...]]:
    """Record the arguments of every call of ``owner.name`` (which still runs)."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def test_the_fast_lane_answers_as_the_fastapi_route(
    clients: tuple[TestClient, TestClient], rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, plain = clients
    answered = spy(monkeypatch, fast_lane, "recommend_body")
    assert isinstance(fast.app, Service) and fast.app.lane is not None
    delegated = spy(monkeypatch, fast.app.lane, "app")  # what the lane hands to the app
    statuses = []
    for headers, body in requests(rec):
        kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        a = fast.post("/recommend", headers=headers, **kw)
        b = plain.post("/recommend", headers=headers, **kw)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), (headers, body)
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
        statuses.append(a.status_code)
    assert statuses == [200] * 4 + [404] * 2 + [422] * 6 + [401] * 3 + [413]
    assert len(answered) == 4  # the valid requests took the fast lane, the refusals the route
    # the lane answered the valid ones and the model's errors (two 404, the unknown feature's
    # 422) without the middleware stack, and handed the other refusals to it
    assert len(delegated) == len(statuses) - 7
    cold = fast.post("/recommend", json={"history": [5, 7], "k": 2}, headers=AUTH).json()
    assert "user_id" not in cold and len(cold["items"]) == 2  # None is left out, as by the model


def test_an_error_of_the_model_runs_it_once(
    clients: tuple[TestClient, TestClient], rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, _ = clients
    calls = spy(monkeypatch, rec, "recommend")
    r = fast.post("/recommend", json={"user_id": 987654}, headers=AUTH)
    assert r.status_code == 404 and "987654" in r.json()["detail"]
    assert len(calls) == 1  # answered by the fast lane, not run again through the route


def test_the_service_settles_its_heap_once_started(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled = []
    monkeypatch.setattr(app_module, "settle_heap", lambda: settled.append(1))
    app = create_app(rec)
    assert settled == []
    with TestClient(app) as c:
        assert settled == [1]  # at start-up, before the first request
        assert c.post("/recommend", json={"user_id": 1, "k": 2}).status_code == 200


def test_the_service_with_a_model_process(tiny_run: Path, rec: Recommender) -> None:
    app = create_app(tiny_run, api_key=KEY, model_processes=1)
    pool = app.state.model_pool
    assert isinstance(pool, ModelPool) and pool.pids[0] is not None
    with TestClient(app) as c:
        r = c.post("/recommend", json={"user_id": 1, "k": 4}, headers=AUTH)
        assert r.status_code == 200, r.text
        got = [it["item_id"] for it in r.json()["items"]]
        assert got == rec.recommend([1], k=4).ids[0].tolist()
        r = c.post("/recommend", json={"user_id": 987654}, headers=AUTH)
        assert r.status_code == 404 and "987654" in r.json()["detail"]
    assert pool.pids == [None]  # the service closed its model process when it stopped


def test_model_processes_answer_as_the_library(tiny_run: Path, rec: Recommender) -> None:
    pool = ModelPool(tiny_run, processes=2)
    try:
        assert len(pool) == 2 and len(set(pool.pids)) == 2
        # each on its own share of the cores (pinned by default)
        pinned = [os.sched_getaffinity(pid) for pid in pool.pids if pid is not None]
        assert pinned == [cpu_share(0, 2), cpu_share(1, 2)]
        queries = [UserQuery(user_id=u) for u in (1, 2, 3)] + [UserQuery(history=[5, 7])]
        for _ in range(3):  # every process answers at least once
            got = pool.recommend(queries, 5, explain=True, predictions=True)
            want = rec.recommend(queries, 5, explain=True, predictions=True)
            assert got.ids.tolist() == want.ids.tolist()
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
            assert got.support is not None and want.support is not None
            assert got.support.tolist() == want.support.tolist()
            for task, p in want.predictions.items():
                np.testing.assert_allclose(got.predictions[task], p, rtol=1e-5)
        # errors come back as themselves
        with pytest.raises(UnknownIdError, match="987654") as err:
            pool.recommend([UserQuery(user_id=987654)], 5)
        assert err.value.ids == [987654]
        with pytest.raises(ValueError, match="k must be a positive integer"):
            pool.recommend(queries, 0)
    finally:
        pool.close()
    assert pool.pids == [None, None]


def test_model_processes_run_below_the_server(tiny_run: Path) -> None:
    pool = ModelPool(tiny_run, processes=1)
    try:
        (pid,) = pool.pids
        assert pid is not None
        # the event loop gets a core first: the child's nice value is MODEL_NICE above ours
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + min(
            MODEL_NICE, 19 - os.getpriority(os.PRIO_PROCESS, 0)
        )
    finally:
        pool.close()


def test_cores_are_shared_out_among_model_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6, 7})
    assert [cpu_share(i, 2) for i in range(2)] == [{4, 5}, {6, 7}]
    assert [cpu_share(i, 3) for i in range(3)] == [{4}, {5}, {6}]  # one left to the server
    assert [cpu_share(i, 6) for i in range(6)] == [{4}, {5}, {6}, {7}, {4}, {5}]  # cycling
    assert cpu_share(0, 1) == {4, 5, 6, 7}


# a pool called as a thread calls it (``recommend``) and as the service does (event loop),
# under asyncio's loop and under uvloop, which uvicorn runs (and which leaves the descriptors it
# watched non-blocking: issue 21)
CALLS: dict[str, Any] = {
    "thread": lambda pool, *a, **kw: pool.recommend(*a, **kw),
    "event loop": lambda pool, *a, **kw: asyncio.run(pool.recommend_async(*a, **kw)),
    "uvloop": lambda pool, *a, **kw: uvloop.run(pool.recommend_async(*a, **kw)),
}


@pytest.mark.parametrize("call", CALLS)
def test_answers_longer_than_one_read_come_back_whole(
    tiny_run: Path, rec: Recommender, call: str
) -> None:
    # issue 21: at k = 1000 an answer (here ~30 KB a user) arrives in several writes; the event
    # loop read it as one and, under uvloop, broke off mid-read about every other call, which
    # killed the model process (exit code -9) and answered 500
    pool = ModelPool(tiny_run, processes=1)
    try:
        (pid,) = pool.pids
        for users in ([1], [1, 2, 3, 4, 5, 6, 7, 8]):
            queries = [UserQuery(user_id=u) for u in users]
            want = rec.recommend(queries, 1000, explain=True, predictions=True)
            for _ in range(5):
                got = CALLS[call](pool, queries, 1000, explain=True, predictions=True)
                assert got.ids.tolist() == want.ids.tolist()
                np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
        assert pool.pids == [pid]  # never replaced
    finally:
        pool.close()


@pytest.mark.parametrize("call", CALLS)
def test_a_model_process_found_dead_is_replaced_before_the_call(tiny_run: Path, call: str) -> None:
    pool = ModelPool(tiny_run, processes=1)
    try:
        (pid,) = pool.pids
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        pool._all[0]._proc.join(10)  # type: ignore[union-attr]  # dead before the call
        out = CALLS[call](pool, [UserQuery(user_id=1)], 3)
        assert out.ids.shape == (1, 3) and pool.pids[0] not in (None, pid)
    finally:
        pool.close()


@pytest.mark.parametrize("call", CALLS)
def test_a_model_process_that_dies_during_a_call_fails_it(
    tiny_run: Path, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = ModelPool(tiny_run, processes=1)
    proc = pool._all[0]
    try:
        conn, child = proc._conn, proc._proc
        assert conn is not None and child is not None

        class DiesAfterSend:  # the child is killed once it has the request
            def __getattr__(self, name: str) -> Any:
                return getattr(conn, name)

            def send(self, obj: Any) -> None:
                conn.send(obj)
                os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
                child.join(10)

        async def send_then_die(*args: Any) -> None:  # the same on the event loop's path
            await send_message(*args)
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join(10)

        send_message = model_process._send_message
        monkeypatch.setattr(model_process, "_send_message", send_then_die)
        proc._conn = DiesAfterSend()  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="model process exited"):
            CALLS[call](pool, [UserQuery(user_id=1)], 3)
        assert pool.pids == [None]
        monkeypatch.undo()
        out = CALLS[call](pool, [UserQuery(user_id=1)], 3)  # a new process
        assert out.ids.shape == (1, 3) and pool.pids[0] is not None
    finally:
        pool.close()


def test_from_the_event_loop_a_hung_or_abandoned_call_kills_its_process(
    tiny_run: Path, rec: Recommender
) -> None:
    pool = ModelPool(tiny_run, processes=1)
    proc = pool._all[0]
    queries = [UserQuery(user_id=u) for u in (1, 2)]
    try:
        # hung: the child is stopped, so it never answers
        proc.call_timeout = 0.5
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match=r"did not answer in 0\.5 s"):
            asyncio.run(pool.recommend_async(queries, 3))
        assert pool.pids == [None]  # killed; the next call starts a new one
        proc.call_timeout = 60.0

        # abandoned: the caller is cancelled while the child works on its request
        asyncio.run(pool.recommend_async(queries, 3))  # a new process, which answers
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]  # from now on it keeps us waiting

        async def cancelled() -> None:
            task = asyncio.ensure_future(pool.recommend_async(queries, 3))
            await asyncio.sleep(0.3)  # the request is in the pipe, the answer awaited
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled())
        assert pool.pids == [None]  # killed: the answer it owed can never be read by mistake
        # the next call reads its own answer, not a stale one
        got = asyncio.run(pool.recommend_async(queries, 3))
        assert got.ids.tolist() == rec.recommend(queries, 3).ids.tolist()
    finally:
        pool.close()


def test_a_bad_run_fails_the_model_process_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"run directory not found: .*nowhere"):
        ModelPool(tmp_path / "nowhere", processes=1)


class SlowRanker:
    """Answers after 0.2 s and records how many calls overlapped; fails for ``fail_for`` users."""

    def __init__(self, fail_for: set[int] | None = None) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.sizes: list[int] = []
        self.fail_for = fail_for or set()

    def recommend(self, queries: list[UserQuery], k: int, **_: Any) -> Recommendations:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.sizes.append(len(queries))
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        if any(q.user_id in self.fail_for for q in queries):
            raise KeyError("a user that fails")
        ids = np.array([[q.user_id] * k for q in queries])
        return Recommendations(ids, ids.astype(object), np.zeros(ids.shape, np.float32))


@pytest.mark.parametrize("parallel", [1, 2])
def test_batches_run_in_parallel_up_to_the_limit(parallel: int) -> None:
    ranker = SlowRanker()
    batcher = MicroBatcher(ranker, max_batch=2, parallel=parallel)  # type: ignore[arg-type]
    opts = Options.of(3, None, None, None, False)

    async def go() -> list[Recommendations]:
        return await asyncio.gather(*(batcher.recommend(UserQuery(u), opts) for u in range(6)))

    results = asyncio.run(go())
    batcher.close()
    assert [r.ids.tolist() for r in results] == [[[u] * 3] for u in range(6)]
    assert ranker.most == parallel
    # one at a time, each call takes what it may; two at once, each takes a fair share, so the
    # last two requests go one to each call when both calls end together
    assert ranker.sizes in ([[2, 2, 2]] if parallel == 1 else [[2, 2, 2], [2, 2, 1, 1]])


def test_a_failed_batch_gives_its_slot_back() -> None:
    ranker = SlowRanker(fail_for={3})
    batcher = MicroBatcher(ranker, max_batch=2, parallel=2)  # type: ignore[arg-type]
    opts = Options.of(3, None, None, None, False)

    async def go(users: range) -> list[Any]:
        requests = (batcher.recommend(UserQuery(u), opts) for u in users)
        return await asyncio.gather(*requests, return_exceptions=True)

    first = asyncio.run(go(range(4)))
    assert isinstance(first[3], KeyError) and first[2].ids.tolist() == [[2] * 3]
    ranker.most = 0
    second = asyncio.run(go(range(10, 14)))  # both slots are free again: two calls at once
    batcher.close()
    assert [r.ids.tolist() for r in second] == [[[u] * 3] for u in range(10, 14)]
    assert ranker.most == 2


def test_answer_items_hand_worked() -> None:
    from hydrarec.serving.routes import items_of

    # every slot filled, numeric ids: whole rows, as plain Python numbers
    full = Recommendations(
        np.array([[4, 2]]),
        np.array([[40, 20]], dtype=np.int64),
        np.array([[0.5, 0.25]], dtype=np.float32),
        {"like": np.array([[0.75, 0.5]], dtype=np.float32)},
    )
    got = items_of(full, 0)
    assert got == [
        {"item_id": 40, "score": 0.5, "predictions": {"like": 0.75}},
        {"item_id": 20, "score": 0.25, "predictions": {"like": 0.5}},
    ]
    assert type(got[0]["item_id"]) is int
    # an empty slot is left out; object ids (None in empty slots) come out as plain values
    gap = Recommendations(
        np.array([[0, -1], [1, 3]]),
        np.array([[np.str_("a"), None], ["b", "d"]], dtype=object),
        np.array([[1.0, -np.inf], [2.0, 1.5]], dtype=np.float32),
        {"like": np.array([[0.25, np.nan], [0.5, 0.125]], dtype=np.float32)},
        support=np.array([[[2], [-1]], [[0], [0]]]),
        support_ids=np.array([[["c"], [None]], [["a"], ["a"]]], dtype=object),
        support_scores=np.array([[[0.5], [np.nan]], [[0.25], [0.75]]], dtype=np.float32),
    )
    got = items_of(gap, 0)
    assert got == [
        {
            "item_id": "a",
            "score": 1.0,
            "predictions": {"like": 0.25},
            "because": [{"item_id": "c", "similarity": 0.5}],
        }
    ]
    assert type(got[0]["item_id"]) is str
    assert [i["because"] for i in items_of(gap, 1)] == [
        [{"item_id": "a", "similarity": 0.25}],
        [{"item_id": "a", "similarity": 0.75}],
    ]
