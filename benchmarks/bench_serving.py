"""Serving speed on a MovieLens-100K multi-task run (issue 5).

A uvicorn server (``hydrarec serve``) on loopback is driven with ``POST /recommend`` (k = 10, a
random known user per request) by a raw HTTP/1.1 keep-alive client (asyncio streams on uvloop, one
connection per worker) at each concurrency for ``--duration`` seconds, once with each index.
Reported: throughput, p50 / p95 / p99 latency, errors (any non-200 or transport error). Then the
batch path: users per second of ``recommend --all-users`` (the library call behind it,
``Recommender.recommend(...).table``, k = 100, model already loaded).

The client shares the machine with the server, so these are lower bounds of what the server alone
could do; the client's own CPU per request is reported beside the server's. The server's CPU time
per request (from /proc) barely depends on what else the machine runs. A ``GET /healthz`` row
shows what the HTTP stack alone (uvicorn + FastAPI) allows.

Two columns say what bounds a row. The *CPU ceiling* is the requests/s the machine would serve
if every core (less the hypervisor's steal) did nothing but this work, at the CPU cost per request
(server + client) the row measured: ``cores * (1 - steal) / cost``. By Little's law (concurrency
= requests/s x mean latency) no schedule gets the mean latency below ``concurrency / ceiling``:
the *latency floor*. p99 sits well above that floor (about twice it at c = 16 on the 2-core
benchmark VM), so once the floor nears half a p99 target, only a lower CPU cost per request (or
more cores) meets it.

    HYDRAREC_DATA_DIR=/work/shared/data python benchmarks/bench_serving.py runs/ml100k --duration 30

On a shared machine one pass is one draw of its speed: ``--repeat N`` runs the whole plan N times,
one after the other, with a row per pass, so the spread is in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from hydrarec.serving.model_process import cpu_count

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ml100k_mmoe.toml"


@dataclass
class Load:
    index: str
    endpoint: str
    concurrency: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    server_cpu_s: float  # CPU seconds the server processes used meanwhile (nan if unknown)
    client_cpu_s: float  # CPU seconds the load generator (this process) used meanwhile
    workers: int = 1
    model_processes: int = 1
    steal: float = float("nan")  # share of the machine's CPU time the hypervisor took meanwhile
    repeat: int = 1  # which pass over the whole plan (``--repeat``)
    cores: int = 1  # CPU cores the machine gave this benchmark

    @property
    def ceiling(self) -> float:
        """Requests/s with every core (less steal) on this work, at the measured CPU cost per
        request (server + client); nan when a cost is unknown."""
        cost_s = (self.cpu_ms_per_request + self.client_ms_per_request) / 1000
        free = 1.0 if math.isnan(self.steal) else 1.0 - self.steal
        return self.cores * free / cost_s if cost_s > 0 else math.nan

    @property
    def floor_ms(self) -> float:
        """The least mean latency at this concurrency and CPU cost (Little's law)."""
        return 1000 * self.concurrency / self.ceiling

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(len(self.latencies_ms), 1)

    @property
    def client_ms_per_request(self) -> float:
        return 1000 * self.client_cpu_s / max(len(self.latencies_ms), 1)

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def ensure_run(run: Path) -> None:
    """Train the MovieLens-100K multi-task run into ``run`` unless it is there already."""
    if (run / "model.safetensors").is_file():
        return
    print(f"training {CONFIG.name} into {run} (no run there yet) ...", flush=True)
    cmd = [
        sys.executable,
        "-m",
        "hydrarec",
        "train",
        "--config",
        str(CONFIG),
        "--out",
        str(run),
        "-q",
    ]
    subprocess.run(cmd, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    run: Path, index: str, port: int, threads: int, workers: int = 1, model_processes: int = 1
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        "-m",
        "hydrarec",
        "serve",
        str(run),
        "--port",
        str(port),
        "--index",
        index,
        "--workers",
        str(workers),
        "--model-processes",
        str(model_processes),
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError("server not ready after 120 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of the machine so far, from Linux /proc/stat; (0, 0) elsewhere.
    On a shared virtual machine, steal is time the hypervisor gave to other guests."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and its children (uvicorn's worker
    processes), alive ones read from Linux /proc; nan elsewhere."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, CPU seconds)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = int(fields[11]) + int(fields[12])
        stats[int(stat.parent.name)] = (int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))
    if pid not in stats:
        return float("nan")
    total, frontier = 0.0, {pid}
    while frontier:
        total += sum(stats[p][1] for p in frontier)
        frontier = {p for p, (parent, _) in stats.items() if parent in frontier}
    return total


REQUEST_TIMEOUT = 30.0  # seconds a request may take before it counts as an error


async def _within(seconds: float, request: Coroutine[Any, Any, bool]) -> bool:
    """``await request`` under a deadline: ``asyncio.timeout`` (Python 3.11+) sets one on the
    running task, where ``asyncio.wait_for`` (3.10) wraps every request in a task of its own,
    client CPU that the shared machine takes from the server."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:
        return await asyncio.wait_for(request, seconds)
    async with timeout(seconds):
        return await request


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> bool:
    """Send one pre-encoded HTTP/1.1 request on a kept-alive connection; read the whole response.
    True when the status is 200."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")


async def drive(
    url: str, users: list[int], concurrency: int, seconds: float, endpoint: str = "/recommend"
) -> tuple[list[float], int, float]:
    """``concurrency`` workers, each on its own kept-alive connection, sending one request after
    another until time is up: ``POST /recommend`` for a random known user, or ``GET endpoint``
    (the framework floor).

    The client writes raw HTTP/1.1 over asyncio streams (as load generators such as wrk do)
    rather than through httpx: on a 2-core machine the client shares the CPU with the server, and
    httpx costs more CPU per request than the server's HTTP stack, so it would measure itself.
    """
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0

    def encode(user: int) -> bytes:
        if endpoint != "/recommend":
            return f"GET {endpoint} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        body = json.dumps({"user_id": user, "k": 10}).encode()
        return (
            f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    requests = [encode(u) for u in users]

    async def worker(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    request = _request(reader, writer, rng.choice(requests))
                    ok = await _within(REQUEST_TIMEOUT, request)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    end = start + seconds
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


def _run(coro: Any) -> Any:
    """Run the client on uvloop when installed (``uvicorn[standard]`` brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def known_users(run: Path) -> list[int]:
    return [int(u) for u in json.loads((run / "data" / "ids.json").read_text())["users"]]


def serve_and_drive(
    run: Path,
    index: str,
    levels: list[int],
    seconds: float,
    threads: int,
    floor: bool,
    workers: int = 1,
    model_processes: int = 1,
) -> list[Load]:
    """Start a server with ``index``, warm it up, drive each load level; with ``floor``, also
    ``GET /healthz`` at the first level (what the HTTP stack alone allows)."""
    port = free_port()
    proc = start_server(run, index, port, threads, workers, model_processes)
    url = f"http://127.0.0.1:{port}"
    users = known_users(run)
    plan = [("/recommend", c) for c in levels] + ([("/healthz", levels[0])] if floor else [])
    try:
        _run(drive(url, users, 4, min(3.0, seconds)))  # warm up
        out = []
        for endpoint, c in plan:
            cpu0, client0, ticks0 = cpu_seconds(proc.pid), time.process_time(), cpu_ticks()
            lat, err, took = _run(drive(url, users, c, seconds, endpoint))
            server_cpu, client_cpu = cpu_seconds(proc.pid) - cpu0, time.process_time() - client0
            stolen, total = (b - a for a, b in zip(ticks0, cpu_ticks(), strict=True))
            ld = Load(index, endpoint, c, took, lat, err, server_cpu, client_cpu, workers)
            ld.model_processes, ld.steal = model_processes, stolen / total if total else math.nan
            ld.cores = cpu_count()
            out.append(ld)
            print(f"  {index} {endpoint} c={c}: {ld.throughput:.0f} req/s", flush=True)
        return out
    finally:
        stop(proc)


def batch_users_per_second(run: Path, index: str, k: int = 100) -> tuple[float, float]:
    """(users/s, seconds) of the ``--all-users`` path, model loaded, k = 100."""
    from hydrarec.recommend.recommender import Recommender

    rec = Recommender.load(run, index=index)
    users = list(rec.run.user_ids.raw_ids)
    rec.recommend(users[:64], k).table(users[:64])  # warm up
    t0 = time.perf_counter()
    rec.recommend(users, k, batch_size=1024).table(users)
    took = time.perf_counter() - t0
    return len(users) / took, took


def table(loads: list[Load], batch: dict[str, tuple[float, float]]) -> str:
    lines = [
        "| pass | index | workers | model processes | request | concurrency | requests/s | p50 ms "
        "| p95 ms | p99 ms | errors | server cores used | server CPU ms / request "
        "| client CPU ms / request | steal % | CPU ceiling requests/s | latency floor ms |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ld in loads:
        lines.append(
            f"| {ld.repeat} | {ld.index} | {ld.workers} | {ld.model_processes} | {ld.endpoint} "
            f"| {ld.concurrency} "
            f"| {ld.throughput:.0f} | {ld.percentile(50):.1f} | {ld.percentile(95):.1f} "
            f"| {ld.percentile(99):.1f} | {ld.errors} | {ld.server_cpu_s / ld.seconds:.2f} "
            f"| {ld.cpu_ms_per_request:.2f} | {ld.client_ms_per_request:.2f} "
            f"| {100 * ld.steal:.0f} | {ld.ceiling:.0f} | {ld.floor_ms:.1f} |"
        )
    lines += ["", "| index | batch `--all-users` users/s (k = 100) | seconds |", "|---|---:|---:|"]
    lines += [f"| {kind} | {ups:.0f} | {s:.2f} |" for kind, (ups, s) in batch.items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="MovieLens-100K run (trained here if missing)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per load level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--indexes", nargs="+", default=["exact", "faiss_hnsw"])
    p.add_argument("--server-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    p.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="server worker processes to try"
    )
    p.add_argument(
        "--model-processes",
        type=int,
        nargs="+",
        default=[min(4, cpu_count())],
        help="processes running the /recommend model to try (0: in the HTTP process; default: "
        "the server's, one per core up to 4)",
    )
    p.add_argument("--no-floor", action="store_true", help="skip the GET /healthz floor row")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="passes over the whole plan, one after the other (a row per pass: on a shared "
        "machine the spread between passes is part of the result)",
    )
    args = p.parse_args()
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, got {args.repeat}")
    ensure_run(args.run)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"cores: {os.cpu_count()}; load average {load:.1f}; {args.duration:.0f} s per level",
        flush=True,
    )
    loads: list[Load] = []
    for repeat in range(1, args.repeat + 1):
        for workers in args.workers:
            for model_processes in args.model_processes:
                for index in args.indexes:
                    done = serve_and_drive(
                        args.run,
                        index,
                        args.concurrency,
                        args.duration,
                        args.server_threads,
                        floor=not args.no_floor and index == args.indexes[0],
                        workers=workers,
                        model_processes=model_processes,
                    )
                    for ld in done:
                        ld.repeat = repeat
                    loads += done
    batch = {index: batch_users_per_second(args.run, index) for index in args.indexes}
    print(table(loads, batch))


if __name__ == "__main__":
    main()
