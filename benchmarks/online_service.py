"""``bench_online.py ingest`` and ``latency``: the event log under a running ``hydrarec serve``.

**ingest**: ``--clients`` concurrent clients (asyncio + httpx, one keep-alive connection each)
``POST /events`` batches of ``--batch`` synthetic events (MovieLens-like ids, a unique
``event_id`` each) for ``--seconds`` (or ``--max-events``) to a fresh log (SQLite, or PostgreSQL
with ``--events URL`` / ``--postgres``). Reported: acknowledged events per second (sum of the
answers' ``stored`` over the wall time), request latency p50 / p99, errors, and the log's count
afterwards (``hydrarec events export``), which must equal the acknowledged events.

**latency**: two random groups of the run's known users. Requests alternate between group A
(never any events) and group B, one at a time (no queueing), at each stage: served without an
event log; with a log, B without events; then B with 10 and 50 events each (``--counts``),
logged through ``POST /events``. Reported: ``/recommend`` p50 / p99 of each group at each stage,
and the time of the read ``/recommend`` makes (``EventStore.user_items``, the product's call,
timed here in-process on the same log because the service does not report it). A known user
without events is served its cached vector; a user with events is encoded with them at each
request, which the B rows include.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from online_http import Service, hydrarec, post_events, serve, train

ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = ROOT / "configs" / "ml100k_loo.toml"
N_USERS, N_ITEMS = 943, 1682  # MovieLens-100K's id ranges, for synthetic events


def served_run(run: Path | None, work: Path) -> Path:
    """The run to serve: ``run``, else the shipped ml100k_loo config trained for one epoch (the
    served model's shape is the shipped one; its quality does not matter here)."""
    if run is not None:
        return run
    out = work / "serve-run"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    if not (out / "model.safetensors").is_file():
        print(f"training {SERVE_CONFIG.name} for 1 epoch into {out} ...", flush=True)
        train(SERVE_CONFIG, out, ["train.epochs=1"], work / "logs" / "train-serve-run.log")
    return out


def fresh_sqlite(path: Path) -> str:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    return str(path)


def percentiles(ms: list[float], digits: int = 1) -> str:
    if not ms:
        return "- / -"
    return f"{np.percentile(ms, 50):.{digits}f} / {np.percentile(ms, 99):.{digits}f}"


# -- ingest ----------------------------------------------------------------------------------------
async def drive_events(
    service: Service, seconds: float, max_events: int, clients: int, batch: int
) -> dict[str, Any]:
    """Clients POST /events until ``seconds`` pass (or ``max_events`` are sent)."""
    stats: dict[str, Any] = {"stored": 0, "received": 0, "errors": 0, "latency_ms": []}
    sent = 0
    deadline = time.perf_counter() + seconds
    now = int(time.time())

    async def client(c: int) -> None:
        nonlocal sent
        rng = random.Random(c)
        async with service.client() as http:
            n = 0
            while time.perf_counter() < deadline and not (max_events and sent >= max_events):
                sent += batch
                events = [
                    {
                        "user_id": rng.randint(1, N_USERS),
                        "item_id": rng.randint(1, N_ITEMS),
                        "timestamp": now - rng.randint(0, 86_400),
                        "rating": float(rng.randint(1, 5)),
                        "event_id": f"ingest-{c}-{n}-{j}",
                    }
                    for j in range(batch)
                ]
                n += 1
                t = time.perf_counter()
                try:
                    answer = await http.post("/events", json={"events": events})
                except Exception as e:  # a transport error is an error of the service under load
                    stats["errors"] += 1
                    print(f"  transport error: {e!r}", flush=True)
                    continue
                stats["latency_ms"].append((time.perf_counter() - t) * 1000)
                if answer.status_code != 200:
                    stats["errors"] += 1
                    continue
                got = answer.json()
                stats["stored"] += got["stored"]
                stats["received"] += got["received"]

    start = time.perf_counter()
    progress = asyncio.create_task(_progress(stats, start))
    await asyncio.gather(*(client(c) for c in range(clients)))
    progress.cancel()
    stats["seconds"] = time.perf_counter() - start
    return stats


async def _progress(stats: dict[str, Any], start: float) -> None:
    while True:
        await asyncio.sleep(5)
        elapsed = time.perf_counter() - start
        print(
            f"  {elapsed:.0f} s: {stats['stored']:,} events acknowledged "
            f"({stats['stored'] / elapsed:,.0f}/s)",
            flush=True,
        )


def ingest_command(args: argparse.Namespace) -> str:
    run = served_run(args.run, args.work)
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        target = args.events
        if args.postgres:
            target = stack.enter_context(_throwaway_postgres())
        elif target is None:
            target = fresh_sqlite(args.work / "ingest.db")
        shown = "PostgreSQL (throwaway)" if args.postgres else target
        print(f"serving {run} with --events {shown} ...", flush=True)
        with serve(run, logs / "serve-ingest.log", events=target) as service:
            stats = asyncio.run(
                drive_events(service, args.seconds, args.max_events, args.clients, args.batch)
            )
        export = args.work / "ingest-export.parquet"
        hydrarec("events", "export", target, "--out", str(export), log=logs / "export.log")
        in_log = len(pd.read_parquet(export, columns=["event_id"]))
    rate = stats["stored"] / stats["seconds"]
    requests = len(stats["latency_ms"])
    cmd = " ".join(["python benchmarks/bench_online.py", *sys.argv[1:]])
    return "\n".join(
        [
            f"## Online: POST /events ingestion ({time.strftime('%Y-%m-%d')})",
            "",
            f"`{cmd}`: {args.clients} clients, {args.batch} events a request, log {shown}",
            "",
            "| events/s acknowledged | requests | p50 / p99 ms | errors | acknowledged "
            "| in the log | equal |",
            "|---|---|---|---|---|---|---|",
            f"| {rate:,.0f} | {requests:,} in {stats['seconds']:.1f} s | "
            f"{percentiles(stats['latency_ms'])} | {stats['errors']} | {stats['stored']:,} | "
            f"{in_log:,} | {'yes' if in_log == stats['stored'] else 'NO'} |",
            "",
            f"- target >= 5,000 events/s: {'met' if rate >= 5000 else 'missed'}",
        ]
    )


def _throwaway_postgres() -> Any:
    """A new PostgreSQL cluster on a free port (the tests' helper), its URL while open."""
    from contextlib import contextmanager

    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SystemExit("--postgres needs psycopg 3: pip install 'hydrarec[online]'") from None
    sys.path.insert(0, str(ROOT))
    from tests.integration.postgres_server import postgres_server

    @contextmanager
    def url() -> Any:
        with postgres_server() as server:
            yield server.url

    return url()


# -- latency ---------------------------------------------------------------------------------------
def known_ids(run: Path) -> tuple[list[Any], list[Any]]:
    """The run's raw user and item ids (``Recommender.load``)."""
    from hydrarec.recommend.recommender import Recommender

    rec = Recommender.load(run)
    return rec.run.user_ids.raw_ids.tolist(), rec.run.item_ids.raw_ids.tolist()


async def alternate(
    service: Service, group_a: list[Any], group_b: list[Any], requests: int
) -> dict[str, Any]:
    """``requests`` /recommend calls per group, alternating A, B, one at a time."""
    out: dict[str, Any] = {"A": [], "B": [], "used_B": 0}
    async with service.client() as http:
        for r in range(requests):
            for name, group in (("A", group_a), ("B", group_b)):
                body = {"user_id": group[r % len(group)], "k": 10}
                t = time.perf_counter()
                answer = await http.post("/recommend", json=body)
                out[name].append((time.perf_counter() - t) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"/recommend: {answer.status_code} {answer.text}")
                if name == "B":
                    out["used_B"] += answer.json().get("events", {}).get("used", 0)
    out["used_B"] /= requests
    return out


def read_times(log: str, users: list[Any], rounds: int = 5) -> list[float]:
    """Milliseconds of ``EventStore.user_items(user, HISTORY_EVENTS)``: /recommend's read."""
    from hydrarec.online.store import open_store
    from hydrarec.serving.event_log import HISTORY_EVENTS

    store = open_store(log)
    times = []
    try:
        for _ in range(rounds):
            for u in users:
                t = time.perf_counter()
                store.user_items(str(u), HISTORY_EVENTS)
                times.append((time.perf_counter() - t) * 1000)
    finally:
        store.close()
    return times


def user_events(users: list[Any], items: list[Any], n: int, start: int) -> list[dict[str, Any]]:
    """``n`` events per user (random catalogue items, one second apart), ids from ``start``."""
    rng = random.Random(start)
    base = int(time.time()) - 3_600
    return [
        {
            "user_id": u,
            "item_id": rng.choice(items),
            "timestamp": base + start + j,
            "event_id": f"lat-{u}-{start + j}",
        }
        for u in users
        for j in range(n)
    ]


def latency_command(args: argparse.Namespace) -> str:
    run = served_run(args.run, args.work)
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    users, items = known_ids(run)
    pick = random.Random(0).sample(users, 2 * args.users)
    group_a, group_b = pick[: args.users], pick[args.users :]
    counts = [int(c) for c in args.counts.split(",")]
    rows: list[tuple[str, dict[str, Any], list[float] | None, list[float] | None]] = []
    mp = args.model_processes
    print("stage: no event log ...", flush=True)
    with serve(run, logs / "serve-latency-none.log", model_processes=mp) as service:
        rows.append(
            (
                "no event log",
                asyncio.run(alternate(service, group_a, group_b, args.requests)),
                None,
                None,
            )
        )
    log = fresh_sqlite(args.work / "latency.db")
    with serve(run, logs / "serve-latency.log", events=log, model_processes=mp) as service:
        done = 0
        for n in [0, *counts]:
            if n > done:
                asyncio.run(post_events(service, user_events(group_b, items, n - done, done)))
                done = n
            print(f"stage: event log, B with {n} events each ...", flush=True)
            got = asyncio.run(alternate(service, group_a, group_b, args.requests))
            rows.append(
                (
                    f"event log, B: {n} events",
                    got,
                    read_times(log, group_a),
                    read_times(log, group_b),
                )
            )
    cmd = " ".join(["python benchmarks/bench_online.py", *sys.argv[1:]])
    shown_mp = (
        "model processes: the service's default" if mp is None else f"`--model-processes {mp}`"
    )
    table = [
        f"## Online: /recommend latency with events ({time.strftime('%Y-%m-%d')})",
        "",
        f"`{cmd}`: {args.users} users a group, {args.requests} requests per group and stage, "
        f"A and B alternating, one at a time; {shown_mp}; SQLite log",
        "",
        "| stage | A (0 events) p50 / p99 ms | B p50 / p99 ms | B events used per request | "
        "event read, A p50 / p99 ms | event read, B p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, got, read_a, read_b in rows:
        reads = (
            "- | -"
            if read_a is None
            else f"{percentiles(read_a, 3)} | {percentiles(read_b or [], 3)}"
        )
        table.append(
            f"| {name} | {percentiles(got['A'])} | {percentiles(got['B'])} | "
            f"{got['used_B']:.0f} | {reads} |"
        )
    table += [
        "",
        "- event read: `EventStore.user_items` timed in-process on the same log (the "
        "service does not report it); the service adds a thread-pool hop",
    ]
    return "\n".join(table)
