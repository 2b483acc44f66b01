"""The service as deployed: ``hydrarec serve`` in a process of its own (uvicorn's protocol, uvloop,
model processes), probed over loopback as a demanding or hostile client would (issue 21): large
``k`` under concurrent load, half-sent requests, a body sent byte by byte, oversized headers,
every connection held, and the API fuzzed from its own OpenAPI schema (schemathesis)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from tests.integration.live import served
from tests.integration.tiny import AUTH, KEY

from hydrarec.recommend.recommender import Recommender, UserQuery

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 64
SLACK = 1.5  # the sweep's period (a quarter of the header deadline) and a loaded machine


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def server(tiny_run: Path, log: Path) -> Iterator[str]:
    options = [
        *("--api-key-env", "HYDRAREC_TEST_KEY", "--model-processes", "2", "--no-access-log"),
        *("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)),
        *("--max-connections", str(MAX_CONNECTIONS)),
    ]
    with served(tiny_run, *options, env={"HYDRAREC_TEST_KEY": KEY}, log=log) as url:
        yield url


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def filled(rec: Recommender, user: int, k: int) -> int:
    """How many of ``k`` slots the library fills for ``user`` (the run has only 40 items)."""
    return int((rec.recommend([UserQuery(user_id=user)], k).items[0] >= 0).sum())


# -- defect 1: every k the schema allows, under load -----------------------------------------------
def test_every_k_answers_alone_and_under_concurrent_load(
    server: str, rec: Recommender, log: Path
) -> None:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30.0) as http:
        for k in (1, 2, 39, 40, 41, 500, 999, 1000):
            r = http.post("/recommend", json={"user_id": 7, "k": k})
            assert r.status_code == 200, (k, r.text)
            assert len(r.json()["items"]) == filled(rec, 7, k)

    async def load() -> list[int]:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(
            base_url=server, headers=AUTH, timeout=30.0, limits=limits
        ) as http:
            bodies = [
                {"user_id": 1 + i % 20, "k": 1000 - i % 3, "explain": i % 2 == 0} for i in range(60)
            ]
            answers = await asyncio.gather(*(http.post("/recommend", json=b) for b in bodies))
        return [r.status_code for r in answers]

    statuses = asyncio.run(load())
    assert statuses == [200] * len(statuses)
    assert "Traceback" not in log.read_text()


# -- defect 4: slow and half-sent clients ----------------------------------------------------------
def open_half_sent(url: str, n: int) -> list[socket.socket]:
    """``n`` connections: two thirds stop in the middle of a request's headers, the rest send
    nothing."""
    socks = []
    for i in range(n):
        s = socket.create_connection(address(url), timeout=5.0)
        if i % 3:
            s.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nX-Api-K")
        socks.append(s)
    return socks


def answer_from(s: socket.socket, first: bytes) -> bytes:
    """The whole answer that begins with ``first``: the server closes after it, and may send the
    head and the body in separate segments, so one ``recv`` can end at the blank line."""
    s.settimeout(SLACK)
    answer = first
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while part := s.recv(65536):
            answer += part
    return answer


def closed_by_server(s: socket.socket) -> bool:
    """The server has closed ``s`` (an answer, if any, is read and dropped)."""
    s.setblocking(False)
    try:
        while s.recv(65536):
            pass
    except BlockingIOError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_half_sent_requests_are_cut_off_and_the_probes_answer_meanwhile(server: str) -> None:
    start = time.monotonic()
    socks = open_half_sent(server, 3 * MAX_CONNECTIONS)  # over the cap
    try:
        with httpx.Client(base_url=server, timeout=HEADER_TIMEOUT) as http:
            assert http.get("/healthz").status_code == 200  # a newcomer gets in over the cap
            r = http.post("/recommend", json={"user_id": 1, "k": 5}, headers=AUTH)
            assert r.status_code == 200
        open_ = socks
        while open_ and time.monotonic() - start < HEADER_TIMEOUT + SLACK:
            time.sleep(0.1)
            open_ = [s for s in open_ if not closed_by_server(s)]
        assert open_ == [], f"{len(open_)} of {len(socks)} still open"
    finally:
        for s in socks:
            s.close()


def test_a_body_sent_byte_by_byte_is_cut_off_at_its_deadline(server: str) -> None:
    with socket.create_connection(address(server), timeout=0.5) as s:
        head = (
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n"
        )
        s.sendall(head)
        start, answer = time.monotonic(), b""
        while not answer and time.monotonic() - start < BODY_TIMEOUT + SLACK:
            with httpx.Client(base_url=server, timeout=1.0) as http:  # meanwhile, the probes
                assert http.get("/healthz").status_code == 200
            s.sendall(b" ")  # one byte of the 100
            with contextlib.suppress(TimeoutError):  # no answer yet
                answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"request body not received in 2 s" in answer_from(s, answer)
        assert time.monotonic() - start >= BODY_TIMEOUT - 0.1


def test_headers_over_the_limit_are_431(server: str) -> None:
    with httpx.Client(base_url=server, timeout=5.0) as http:
        r = http.get("/healthz", headers={"X-Padding": "x" * 17_000})
        assert r.status_code == 431 and "16384 bytes" in r.text
        assert http.get("/healthz").status_code == 200


def test_with_every_connection_inside_a_request_only_the_probes_answer(server: str) -> None:
    # each of these has sent its headers and keeps its body: a request in flight until the
    # body deadline cuts it off
    head = (
        b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n"
    )
    socks = []
    try:
        for _ in range(MAX_CONNECTIONS):
            s = socket.create_connection(address(server), timeout=5.0)
            s.sendall(head)
            socks.append(s)
        time.sleep(0.3)  # the server has read them all
        with httpx.Client(base_url=server, timeout=1.0) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/readyz").status_code == 200
            busy = http.get("/metadata", headers=AUTH)
            assert busy.status_code == 503, busy.text
        for s in socks:  # each gets its 408, and the service is open again
            s.settimeout(BODY_TIMEOUT + SLACK)
            assert s.recv(65536).startswith(b"HTTP/1.1 408 ")
        with httpx.Client(base_url=server, timeout=5.0) as http:
            assert http.get("/metadata", headers=AUTH).status_code == 200
    finally:
        for s in socks:
            s.close()


# -- the API fuzzed from its own OpenAPI schema ----------------------------------------------------
# Hypothesis drives schemathesis's strategies here rather than ``@schema.parametrize()``: the
# schema is the live server's, known only once the module's server runs, and schemathesis's
# lazy pytest loader (``from_fixture``) fails under pytest 9.2 (it sets ``Node._nodeid``).
NEGATIVE = schemathesis.GenerationMode.NEGATIVE
# how the service refuses a request (docs/serving.md): a body not UTF-8, no key, an unknown id, a
# body over --max-body-bytes (a list over its maxItems can be), a field the schema refuses
REFUSALS = [400, 401, 404, 413, 422]
FUZZ_CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
)


def integral_floats(value: Any) -> bool:
    """``value`` holds a float such as 2.0, which JSON Schema counts as an integer."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(integral_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(integral_floats(v) for v in value)
    return False


def beyond_the_schema(body: Any) -> bool:
    """A valid body by the schema that the service may still refuse, for what the schema cannot
    say: ``features`` the run does not have (422 from the model), and a float such as 2.0 where
    an integer is expected (strict since issue 21, defect 5)."""
    features = isinstance(body, dict) and body.get("features") is not None
    return features or integral_floats(body)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_the_api_answers_as_its_schema_says(server: str, mode: schemathesis.GenerationMode) -> None:
    # no 5xx, and every answer (status, content type, body, headers) as the schema documents it;
    # valid requests accepted (but see beyond_the_schema), invalid ones refused
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json", config=FUZZ_CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/recommend", "/predict", "/healthz"}
    for operation in operations:
        has_input = operation.body or operation.query or operation.path_parameters
        if mode is NEGATIVE and not has_input:
            continue  # nothing to send wrong (the probes)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: schemathesis.Case) -> None:
            may_refuse = mode is not NEGATIVE and beyond_the_schema(case.body)
            skip = [schemathesis.checks.positive_data_acceptance] if may_refuse else None
            case.call_and_validate(headers=AUTH, excluded_checks=skip)

        answers_as_documented()
