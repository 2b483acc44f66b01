"""A real ``hydrarec serve`` process on a free loopback port, for tests that need the whole stack
(uvicorn's protocol, uvloop, model processes) rather than the in-process ``TestClient``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(
    run: Path, *options: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[str]:
    """``hydrarec serve run *options`` until the block ends; yields its base URL once ready.
    The server's output goes to ``log`` (default: discarded)."""
    port = free_port()
    cmd = [sys.executable, "-m", "hydrarec", "serve", str(run), "--port", str(port), *options]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_ready(url: str, proc: subprocess.Popen, log: Path | None, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text() if log is not None else "(no log)"
            raise AssertionError(f"server exited with {proc.returncode}: {said}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"server not ready after {timeout} s")
