"""The product as a user runs it, for ``bench_online.py``: ``hydrarec train / update / serve``
as subprocesses, and HTTP clients of ``/recommend``, ``/events`` and ``/items/{id}/similar``.
Nothing here scores, selects or excludes items: the service does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench_serving import free_port

KEY_ENV = "HYDRAREC_BENCH_API_KEY"  # the service reads its key from here (--api-key-env)


def hydrarec(*args: str, log: Path | None = None) -> float:
    """Run ``hydrarec ARGS`` to completion; its wall seconds. Output goes to ``log``; a failure
    raises with the log's tail."""
    start = time.perf_counter()
    with open(log or os.devnull, "w") as out:
        done = subprocess.run([sys.executable, "-m", "hydrarec", *args], stdout=out, stderr=out)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise RuntimeError(f"hydrarec {args[0]} failed ({done.returncode}):\n{tail}")
    return seconds


def has_command(name: str) -> bool:
    """Whether this hydrarec has the subcommand ``name`` (``hydrarec NAME --help`` succeeds)."""
    done = subprocess.run(
        [sys.executable, "-m", "hydrarec", name, "--help"], capture_output=True, text=True
    )
    return done.returncode == 0


def has_option(command: str, option: str) -> bool:
    """Whether ``hydrarec COMMAND --help`` lists ``option``."""
    done = subprocess.run(
        [sys.executable, "-m", "hydrarec", command, "--help"], capture_output=True, text=True
    )
    return option in done.stdout


def train(config: Path, out: Path, sets: Sequence[str], log: Path) -> float:
    """``hydrarec train -c CONFIG --out OUT --set ...``; wall seconds."""
    args = ["train", "-c", str(config), "--out", str(out), "--overwrite", "-q"]
    for s in sets:
        args += ["--set", s]
    return hydrarec(*args, log=log)


def update(run: Path, interactions: Path, out: Path, extra: Sequence[str], log: Path) -> float:
    """``hydrarec update RUN --interactions FILE --out OUT [extra]``; wall seconds."""
    shutil.rmtree(out, ignore_errors=True)
    return hydrarec(
        "update", str(run), "--interactions", str(interactions), "--out", str(out), *extra, log=log
    )


@dataclass
class Service:
    """A running ``hydrarec serve``: its URL and the key every API request carries."""

    url: str
    key: str
    proc: subprocess.Popen[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, timeout: float = 60.0) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        return httpx.AsyncClient(
            base_url=self.url, headers={"X-API-Key": self.key}, timeout=timeout, limits=limits
        )


@contextmanager
def serve(
    run: Path, log: Path, events: str | None = None, model_processes: int | None = 0
) -> Iterator[Service]:
    """``hydrarec serve RUN`` on a free loopback port, with an API key (and ``--events``),
    until the block ends; ready once ``/readyz`` answers 200. ``model_processes`` None: the
    service's default."""
    port, key = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "hydrarec",
        "serve",
        str(run),
        "--port",
        str(port),
        "--api-key-env",
        KEY_ENV,
        "--no-access-log",
    ]
    if model_processes is not None:
        cmd += ["--model-processes", str(model_processes)]
    if events is not None:
        cmd += ["--events", events]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, KEY_ENV: key}, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log)
        yield Service(url, key, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hydrarec serve exited ({proc.returncode}):\n{log.read_text()}")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2)
            if answer.status_code == 200:
                if answer.json()["status"] != "ready":  # "degraded": the event log is not open
                    raise RuntimeError(f"service not ready: {answer.text}")
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"hydrarec serve not ready after {limit:.0f} s")


# -- clients -------------------------------------------------------------------------------------
async def post_events(
    service: Service, events: list[dict[str, Any]], batch: int = 1000, clients: int = 4
) -> dict[str, int]:
    """``POST /events`` in batches from ``clients`` concurrent clients; the answers' sums."""
    batches = [events[s : s + batch] for s in range(0, len(events), batch)]
    totals = {"received": 0, "stored": 0, "duplicates": 0}
    queue = list(reversed(batches))
    async with service.client() as client:

        async def worker() -> None:
            while queue:
                body = {"events": queue.pop()}
                answer = await client.post("/events", json=body)
                if answer.status_code != 200:
                    raise RuntimeError(f"POST /events: {answer.status_code} {answer.text[:500]}")
                for k in totals:
                    totals[k] += answer.json()[k]

        await asyncio.gather(*(worker() for _ in range(clients)))
    return totals


@dataclass
class Lists:
    """What ``/recommend`` answered for each user: the top-k raw item ids, or absent (404:
    a user the service does not know), and how many logged events each answer used."""

    items: dict[Any, list[Any]]
    unknown_users: list[Any]
    events_used: dict[Any, int]


async def recommend_all(
    service: Service, users: Sequence[Any], k: int = 10, clients: int = 4
) -> Lists:
    """``POST /recommend`` (``exclude_seen``) for each user, ``clients`` at a time."""
    out = Lists({}, [], {})
    todo = list(reversed(users))
    async with service.client() as client:

        async def worker() -> None:
            while todo:
                user = todo.pop()
                body = {"user_id": user, "k": k, "exclude_seen": True}
                answer = await client.post("/recommend", json=body)
                if answer.status_code == 404:
                    out.unknown_users.append(user)
                    continue
                if answer.status_code != 200:
                    raise RuntimeError(f"/recommend {user}: {answer.status_code} {answer.text}")
                got = answer.json()
                out.items[user] = [item["item_id"] for item in got["items"]]
                out.events_used[user] = got.get("events", {}).get("used", 0)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return out


async def unknown_items(service: Service, items: Sequence[Any], clients: int = 4) -> set[Any]:
    """The items the served run does not know (``GET /items/{id}/similar`` answers 404)."""
    missing: set[Any] = set()
    todo = list(items)
    async with service.client() as client:

        async def worker() -> None:
            while todo:
                item = todo.pop()
                answer = await client.get(f"/items/{item}/similar", params={"k": 1})
                if answer.status_code == 404:
                    missing.add(item)
                elif answer.status_code != 200:
                    raise RuntimeError(f"/items/{item}/similar: {answer.status_code}")

        await asyncio.gather(*(worker() for _ in range(clients)))
    return missing
