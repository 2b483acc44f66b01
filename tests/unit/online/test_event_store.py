"""The SQLite event log (issue 25): round trip in time order, idempotent event ids, group commits,
refused files, and the Parquet export."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from hydrarec.online import Event, EventStoreError, export_events, open_store
from hydrarec.online.export import events_table
from hydrarec.online.store import COLUMNS

T0 = 1_700_000_000.0


def test_round_trip_in_time_order(tmp_path: Path) -> None:
    store = open_store(tmp_path / "events.db")
    # arrival order is not time order: the log reads by timestamp, then arrival
    store.append(
        [
            [Event("u1", "b", T0 + 20), Event("u1", "a", T0 + 10, feedback={"rating": 4.0})],
            [Event("u2", "z", T0), Event("u1", "c", T0 + 20)],
        ]
    )
    assert store.user_items("u1", 10) == ["a", "b", "c"]
    assert store.user_items("u1", 2) == ["b", "c"]  # the latest two, oldest first
    assert store.user_items("u2", 10) == ["z"]
    assert store.user_items("nobody", 10) == []
    assert store.count() == 4
    store.close()
    reopened = open_store(tmp_path / "events.db")  # durable: another connection sees them
    rows = [r for chunk in reopened.rows(chunk=3) for r in chunk]  # chunks: 3 + 1 rows
    assert [r[COLUMNS.index("item_id")] for r in rows] == ["b", "a", "z", "c"]  # arrival order
    assert rows[1][COLUMNS.index("feedback")] == '{"rating": 4.0}'
    reopened.close()


def test_event_ids_make_retries_idempotent(tmp_path: Path) -> None:
    store = open_store(tmp_path / "events.db")
    first = [Event("u", "a", T0, "e1"), Event("u", "b", T0 + 1, "e2"), Event("u", "c", T0 + 2)]
    assert store.append([first]) == [3]
    # the same request again: its identified events are skipped, the anonymous one is new
    assert store.append([first]) == [1]
    # within one transaction, across two requests' batches, and within one batch
    retry = [Event("u", "d", T0 + 3, "e3"), Event("u", "d", T0 + 3, "e3")]
    assert store.append([retry, [Event("u", "a", T0, "e1")]]) == [1, 0]
    assert store.count() == 5
    assert store.user_items("u", 10) == ["a", "b", "c", "c", "d"]
    store.close()


def test_a_failed_group_stores_nothing(tmp_path: Path) -> None:
    """One transaction per group: when a batch fails, the batches before it are rolled back
    (the service then answers 503 to every request of the group, none of which was stored)."""
    store = open_store(tmp_path / "events.db")
    bad = Event("u", "b", T0, feedback={"rating": float("nan")})  # JSON cannot hold NaN
    with pytest.raises(ValueError):
        store.append([[Event("u", "a", T0, "e1")], [bad]])
    assert store.count() == 0
    assert store.append([[Event("u", "a", T0, "e1")]]) == [1]  # the log still works
    store.close()


def test_wal_and_full_sync(tmp_path: Path) -> None:
    store = open_store(tmp_path / "events.db")
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    plan = " ".join(
        str(r)
        for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT item_id FROM hydrarec_events WHERE user_id = ? "
            "ORDER BY ts DESC, seq DESC LIMIT 5",
            ("u",),
        )
    )
    assert "hydrarec_events_user_time" in plan and "TEMP B-TREE" not in plan  # no sort
    store.close()


def test_refused_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all " * 200)
    with pytest.raises(EventStoreError, match=r"corrupt\.db: file is not a database"):
        open_store(corrupt)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    with pytest.raises(EventStoreError, match=r"something else \(tables: orders\)"):
        open_store(foreign)
    with pytest.raises(EventStoreError, match="unsupported scheme 'mysql'"):
        open_store("mysql://localhost/events")
    with pytest.raises(EventStoreError, match="does not exist"):
        open_store(tmp_path / "missing" / "events.db")
    with pytest.raises(EventStoreError, match="is a folder"):
        open_store(tmp_path)


def test_export(tmp_path: Path) -> None:
    log = tmp_path / "events.db"
    store = open_store(log)
    store.append(
        [
            [
                Event("7", "42", T0, "a", {"rating": 5.0}),
                Event("8", "43", T0 + 1, None, {"click": 1.0}),
            ]
        ]
    )
    store.close()
    out = tmp_path / "events.parquet"
    assert export_events(log, out) == 2
    table = pd.read_parquet(out)
    assert list(table.columns) == [
        "user_id", "item_id", "timestamp", "click", "rating", "event_id", "received",
    ]  # fmt: skip
    assert table["user_id"].tolist() == [7, 8] and table["user_id"].dtype == "int64"
    assert table["timestamp"].tolist() == [int(T0), int(T0) + 1]
    assert table["rating"].tolist()[0] == 5.0 and pd.isna(table["rating"].tolist()[1])
    assert table["event_id"].tolist()[0] == "a"
    with pytest.raises(EventStoreError, match="no event log"):
        export_events(tmp_path / "nope.db", out)


def test_export_keeps_ids_that_are_not_integers_as_text() -> None:
    rows = pd.DataFrame(
        [(1, None, "042", "x", T0 + 0.5, T0, None), (2, None, "42", "7", T0, T0, None)],
        columns=list(COLUMNS),
    )
    table = events_table(rows)
    assert table["user_id"].tolist() == ["042", "42"]  # "042" is not the integer 42
    assert table["item_id"].tolist() == ["x", "7"]
    assert table["timestamp"].dtype == "float64"  # a fraction of a second
