"""``hydrarec events export`` and ``hydrarec serve --events`` on the command line (issue 25):
the log written as Parquet, and mistaken logs refused with a message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from hydrarec.online import Event, open_store


def hydrarec(*args: str) -> subprocess.CompletedProcess[str]:
    """The command's result, its stderr unwrapped (the console wraps long messages)."""
    cmd = [sys.executable, "-m", "hydrarec", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    done.stderr = " ".join(done.stderr.split())
    return done


def test_events_export(tmp_path: Path) -> None:
    log = tmp_path / "events.db"
    store = open_store(log)
    store.append([[Event("1", "10", 1.7e9, "a", {"rating": 4.0}), Event("2", "11", 1.7e9 + 1)]])
    store.close()
    out = tmp_path / "events.parquet"
    done = hydrarec("events", "export", str(log), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 events written" in done.stdout
    table = pd.read_parquet(out)
    assert table[["user_id", "item_id"]].to_numpy().tolist() == [[1, 10], [2, 11]]
    assert table["rating"].tolist()[0] == 4.0


def test_mistaken_logs_are_refused_with_a_message(tiny_run: Path, tmp_path: Path) -> None:
    done = hydrarec("events", "export", str(tmp_path / "missing.db"), "--out", "x.parquet")
    assert done.returncode == 2 and "no event log at" in done.stderr
    assert "Traceback" not in done.stderr
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage " * 1000)
    done = hydrarec("events", "export", str(corrupt), "--out", str(tmp_path / "x.parquet"))
    assert done.returncode == 2 and "file is not a database" in done.stderr
    done = hydrarec("serve", str(tiny_run), "--events", "mysql://db/events")
    assert done.returncode == 2 and "unsupported scheme 'mysql'" in done.stderr
    assert "Traceback" not in done.stderr
