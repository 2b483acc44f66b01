"""``EventLog`` group commits (issue 25): requests that arrive while a commit is under way share
the next transaction, and each still learns its own count of new events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hydrarec.online import Event, EventStoreError
from hydrarec.serving.event_log import EventLog


def test_concurrent_requests_share_transactions(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "events.db"))
    assert log.store is not None
    groups: list[int] = []
    append = log.store.append

    def counted(batches: Any) -> list[int]:
        groups.append(len(batches))
        return append(batches)

    log.store.append = counted  # type: ignore[method-assign]

    async def requests() -> list[int]:
        batches = [
            [Event(f"u{r}", f"i{j}", 1.7e9, f"r{r}-{j % 5}") for j in range(10)]  # 5 repeats
            for r in range(40)
        ]
        return await asyncio.gather(*(log.append(b) for b in batches))

    stored = asyncio.run(requests())
    log.close()
    assert stored == [5] * 40  # each request's own count: its 5 ids, each once
    assert sum(groups) == 40 and len(groups) < 40  # fewer transactions than requests
    assert max(groups) > 1


def test_an_unavailable_log_fails_every_request_of_the_group(tmp_path: Path) -> None:
    corrupt = tmp_path / "events.db"
    corrupt.write_bytes(b"no database " * 100)
    log = EventLog(str(corrupt), retry_s=3600)
    assert log.status()["events"] == "unavailable"

    async def one() -> int:
        return await log.append([Event("u", "i", 1.7e9)])

    with pytest.raises(EventStoreError, match="file is not a database"):
        asyncio.run(one())
    log.close()
