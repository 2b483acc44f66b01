"""A throwaway PostgreSQL server in a temporary folder (``initdb`` + ``pg_ctl``) on a free loopback
port, for the tests of the PostgreSQL event log (issue 25). ``.ci/run`` installs the Debian
package where the binaries are missing; tests skip only when they are absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.integration.live import free_port

SEARCHED = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14", "13")]


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, if any."""
    for folder in SEARCHED:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


needs_postgres = pytest.mark.skipif(
    postgres_bin() is None, reason="no PostgreSQL binaries (.ci/run installs them)"
)


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A new cluster in a temporary folder, trust authentication on 127.0.0.1 only."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        assert bin_dir is not None, "no PostgreSQL binaries"
        self.bin = bin_dir
        # not pytest's tmp_path: its parents are root's 0700, which the postgres user cannot enter
        self.root = Path(tempfile.mkdtemp(prefix="hydrarec-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        initdb = [str(bin_dir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres"]
        self._run([*initdb, "-A", "trust"])

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{cmd[0]} failed: {done.stdout}{done.stderr}"

    def _ctl(self, *args: str) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-w", *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._ctl("-t", "60", "-o", options, "-l", str(self.root / "log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        subprocess.run(
            _as_owner(
                [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running server until the block ends."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()
