"""Swapping the served run without dropping a request (issue 25, item 4): ``POST /admin/reload``
and SIGHUP. Requests under way finish on the old run, those that start after the swap get the new
one, none fails; a run that cannot be served is refused and the old one goes on serving."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.integration.live import served
from tests.integration.tiny import AUTH, KEY, tiny_config, tiny_raw

from hydrarec.config import config_from_dict
from hydrarec.io.progress import Progress
from hydrarec.recommend.recommender import Recommender, UserQuery
from hydrarec.run.train import train
from hydrarec.serving import create_app
from hydrarec.serving.served import Served, ServedRun

QUIET = Progress(enabled=False)
USER, K = 1, 5


@pytest.fixture(scope="module")
def other_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config trained from another seed: other weights, so other scores."""
    out = tmp_path_factory.mktemp("reload") / "other"
    train(tiny_config(seed=7), out, progress=QUIET)
    return out


def answer(run: Path) -> list[float]:
    """The scores of USER's top K from the library: what the service must answer on ``run``."""
    out = Recommender.load(run).recommend([UserQuery(user_id=USER)], K, predictions=True)
    return [float(s) for s in out.scores[0]]


def same(got: Any, want: list[float]) -> bool:
    """``got`` (an answer's scores) are ``want``'s, up to float rounding (a model process
    computes them in another process, the test in this one)."""
    return isinstance(got, list) and np.allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def answers(tiny_run: Path, other_run: Path) -> dict[str, list[float]]:
    both = {"tiny": answer(tiny_run), "other": answer(other_run)}
    assert not same(both["tiny"], both["other"])  # else a swap could not be seen
    return both


def scores(body: dict[str, Any]) -> list[float]:
    return [float(it["score"]) for it in body["items"]]


def recommend(client: TestClient | httpx.Client) -> list[float]:
    r = client.post("/recommend", json={"user_id": USER, "k": K}, headers=AUTH)
    assert r.status_code == 200, r.text
    return scores(r.json())


def readyz(client: TestClient | httpx.Client) -> dict[str, Any]:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    return dict(r.json()["detail"])


# -- in one process ------------------------------------------------------------------------------
@pytest.fixture
def client(tiny_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_run, api_key=KEY)) as c:
        yield c


def test_a_reload_needs_the_key(
    client: TestClient, other_run: Path, answers: dict[str, list[float]]
) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = client.post("/admin/reload", json={"run": str(other_run)}, headers=headers)
        assert r.status_code == 401, r.text
    assert readyz(client)["reloads"] == 0 and same(recommend(client), answers["tiny"])
    r = client.post("/admin/reload", json={"run": str(other_run)}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["run"] == str(other_run) and r.json()["reloads"] == 1
    assert readyz(client)["run"] == str(other_run)
    assert same(recommend(client), answers["other"])
    # no run named: the served run's path read again
    r = client.post("/admin/reload", json={}, headers=AUTH)
    assert r.status_code == 200 and r.json()["run"] == r.json()["previous"] == str(other_run)


def test_a_worker_of_several_refuses_a_reload(tiny_run: Path, other_run: Path) -> None:
    # hydrarec serve --workers 2: a request reaches one worker, which must not swap alone
    with TestClient(create_app(tiny_run, api_key=KEY, reloadable=False)) as c:
        r = c.post("/admin/reload", json={"run": str(other_run)}, headers=AUTH)
        assert r.status_code == 409 and "SIGHUP" in r.json()["detail"]
        assert readyz(c)["run"] == str(tiny_run) and readyz(c)["reloads"] == 0


def damaged(run: Path, where: Path) -> Path:
    copy = Path(shutil.copytree(run, where))
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return copy


@pytest.mark.parametrize("case", ["missing", "damaged", "not a run"])
def test_a_run_that_cannot_be_loaded_is_refused_and_the_old_one_serves(
    client: TestClient, tiny_run: Path, tmp_path: Path, answers: dict[str, list[float]], case: str
) -> None:
    run = {
        "missing": lambda: tmp_path / "nowhere",
        "damaged": lambda: damaged(tiny_run, tmp_path / "damaged"),
        "not a run": lambda: tmp_path,
    }[case]()
    r = client.post("/admin/reload", json={"run": str(run)}, headers=AUTH)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"cannot serve {run}:")
    if case == "damaged":
        assert "model.safetensors" in detail
    status = readyz(client)
    assert status["run"] == str(tiny_run) and status["reloads"] == 0
    assert same(recommend(client), answers["tiny"])


def test_a_run_whose_events_do_not_fit_is_refused(
    tiny_run: Path, tmp_path: Path, answers: dict[str, list[float]]
) -> None:
    # POST /events takes the served run's feedback columns (rating): a run without a task that
    # reads ratings would take events of another schema
    raw = tiny_raw(epochs=1)
    raw["tasks"] = [t for t in raw["tasks"] if t["kind"] in ("retrieval", "reconstruction")]
    raw["recommend"] = {"candidates": 20}
    unrated = tmp_path / "unrated"
    train(config_from_dict(raw), unrated, progress=QUIET)
    app = create_app(tiny_run, api_key=KEY, events=str(tmp_path / "events.db"))
    with TestClient(app) as c:
        r = c.post("/admin/reload", json={"run": str(unrated)}, headers=AUTH)
        assert r.status_code == 409, r.text
        assert "feedback columns []," in r.json()["detail"] and "['rating']" in r.json()["detail"]
        assert readyz(c)["run"] == str(tiny_run) and same(recommend(c), answers["tiny"])
    # the same run is served where there is no event log to fit
    with TestClient(create_app(tiny_run, api_key=KEY)) as c:
        r = c.post("/admin/reload", json={"run": str(unrated)}, headers=AUTH)
        assert r.status_code == 200, r.text


def test_a_request_under_way_finishes_on_the_old_run(
    tiny_run: Path, other_run: Path, answers: dict[str, list[float]]
) -> None:
    rec = Recommender.load(tiny_run)
    inside, release = threading.Event(), threading.Event()
    scored = rec.recommend

    def slow(*args: Any, **kwargs: Any) -> Any:  # the first request waits inside the old model
        inside.set()
        assert release.wait(30)
        return scored(*args, **kwargs)

    rec.recommend = slow  # type: ignore[method-assign]
    app = create_app(rec, api_key=KEY)
    served: ServedRun = app.state.served
    old: Served = served.current
    closed: list[bool] = []
    old_close = old.batcher.aclose

    async def close_spy() -> None:
        closed.append(True)
        await old_close()

    old.batcher.aclose = close_spy  # type: ignore[method-assign]
    with TestClient(app) as c:
        first: list[list[float]] = []
        under_way = threading.Thread(target=lambda: first.append(recommend(c)))
        under_way.start()
        assert inside.wait(30)
        r = c.post("/admin/reload", json={"run": str(other_run)}, headers=AUTH)
        assert r.status_code == 200, r.text  # the swap did not wait for the request
        assert same(recommend(c), answers["other"])  # a new request: the new run
        time.sleep(0.3)
        assert not closed and old.requests == 1  # the old run stays open for its request
        release.set()
        under_way.join(30)
        # the request under way: the old run's answer
        assert len(first) == 1 and same(first[0], answers["tiny"])
        deadline = time.monotonic() + 10
        while not closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed == [True]  # then the old run is closed


# -- a real service ------------------------------------------------------------------------------
def hammer(url: str, stop: threading.Event, seen: list[tuple[float, float, Any]]) -> None:
    """Recommend for USER until ``stop``; each request's (start, end, scores or the failure)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            start = time.monotonic()
            try:
                r = client.post("/recommend", json={"user_id": USER, "k": K}, headers=AUTH)
                got: Any = scores(r.json()) if r.status_code == 200 else f"{r.status_code} {r.text}"
            except httpx.HTTPError as e:
                got = repr(e)
            seen.append((start, time.monotonic(), got))


@pytest.mark.slow
def test_reloads_under_load_fail_no_request(
    tiny_run: Path, other_run: Path, answers: dict[str, list[float]], tmp_path: Path
) -> None:
    options = ("--api-key-env", "HYDRAREC_TEST_KEY", "--model-processes", "1", "--no-access-log")
    env = {"HYDRAREC_TEST_KEY": KEY}
    log = tmp_path / "serve.log"
    runs = [("other", other_run), ("tiny", tiny_run), ("other", other_run)]
    with served(tiny_run, *options, env=env, log=log) as url:
        stop = threading.Event()
        seen: list[list[tuple[float, float, Any]]] = [[] for _ in range(4)]
        clients = [threading.Thread(target=hammer, args=(url, stop, s)) for s in seen]
        for t in clients:
            t.start()
        swaps = []  # (when the reload was asked, when it was answered, the run it served)
        with httpx.Client(base_url=url, timeout=120) as admin:
            time.sleep(1)
            for name, run in runs:
                asked = time.monotonic()
                r = admin.post("/admin/reload", json={"run": str(run)}, headers=AUTH)
                assert r.status_code == 200, r.text
                swaps.append((asked, time.monotonic(), name))
                time.sleep(1)
            stop.set()
            for t in clients:
                t.join(60)
            assert readyz(admin)["run"] == str(other_run) and readyz(admin)["reloads"] == 3
    requests = sorted(x for s in seen for x in s)
    failed = [got for _, _, got in requests if not isinstance(got, list)]
    assert len(requests) > 100 and failed == []
    # a request answers with the run served when it started: the one before a swap if it
    # started before the swap was asked, the new one if it started after it was answered
    served_before = ["tiny", *(name for _, _, name in swaps)]
    for start, _, got in requests:
        done = sum(answered <= start for _, answered, _ in swaps)
        asked = sum(asked <= start for asked, _, _ in swaps)
        possible = served_before[done : asked + 1]
        assert any(same(got, answers[name]) for name in possible), (start, got, swaps)
    for i, (_, answered, name) in enumerate(swaps):  # each run answered requests of its own
        until = swaps[i + 1][0] if i + 1 < len(swaps) else float("inf")
        between = [got for start, _, got in requests if answered <= start < until]
        assert between and all(same(got, answers[name]) for got in between)


@pytest.mark.slow
def test_sighup_reads_the_run_path_again_and_refuses_a_bad_run(
    tiny_run: Path, other_run: Path, answers: dict[str, list[float]], tmp_path: Path
) -> None:
    current = tmp_path / "current"  # a link repointed at each release, as deployments do
    current.symlink_to(tiny_run)
    options = ("--api-key-env", "HYDRAREC_TEST_KEY", "--model-processes", "0", "--no-access-log")
    log = tmp_path / "serve.log"
    with served(current, *options, env={"HYDRAREC_TEST_KEY": KEY}, log=log) as url:
        pid = server_pid(url)
        with httpx.Client(base_url=url, timeout=60) as c:
            assert same(recommend(c), answers["tiny"])
            current.unlink()
            current.symlink_to(other_run)
            os.kill(pid, signal.SIGHUP)  # the path it was started with, read again
            wait_for(lambda: readyz(c)["reloads"] == 1, "a reload on SIGHUP")
            assert readyz(c)["run"] == str(current) and same(recommend(c), answers["other"])
            copy = Path(shutil.copytree(tiny_run, tmp_path / "copy"))
            r = c.post("/admin/reload", json={"run": str(copy)}, headers=AUTH)
            assert r.status_code == 200 and same(recommend(c), answers["tiny"])
            (copy / "model.safetensors").write_bytes(b"")  # the last reloaded run, now damaged
            os.kill(pid, signal.SIGHUP)
            wait_for(lambda: "SIGHUP: cannot serve" in log.read_text(), "the refusal logged")
            said = log.read_text()
            assert f"cannot serve {copy}" in said and f"still serving {copy}" in said
            assert readyz(c)["reloads"] == 2 and same(recommend(c), answers["tiny"])


def server_pid(url: str) -> int:
    """The pid of the process listening on ``url``'s port (``served`` runs it as a child)."""
    port = int(url.rsplit(":", 1)[1])
    for pid in os.listdir("/proc"):
        if pid.isdigit() and _listens(int(pid), port):
            return int(pid)
    raise AssertionError(f"no process listens on {port}")


def _listens(pid: int, port: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in cmdline and str(port).encode() in cmdline


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not seen in {timeout} s: {what}"
        time.sleep(0.2)
