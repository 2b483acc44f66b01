"""Progress bars (rich) with a time estimate and running values; silent when quiet or in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


def quiet_by_default() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class Bar:
    def __init__(self, progress: RichProgress | None, task_id: int | None) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, values: dict[str, float] | None = None, n: int = 1) -> None:
        if self._progress is None or self._task_id is None:
            return
        shown = " ".join(f"{k}={v:.4f}" for k, v in (values or {}).items())
        self._progress.update(self._task_id, advance=n, values=shown)


class Progress:
    """``with progress.task("epoch 1", total=n) as bar: bar.advance({"loss": 0.3})``."""

    def __init__(self, enabled: bool | None = None, console: Console | None = None) -> None:
        self.enabled = (not quiet_by_default()) if enabled is None else enabled
        self.console = console or Console(stderr=True)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Bar]:
        if not self.enabled:
            yield Bar(None, None)
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[values]}"),
        )
        with RichProgress(*columns, console=self.console, transient=False) as p:
            yield Bar(p, p.add_task(description, total=total, values=""))
