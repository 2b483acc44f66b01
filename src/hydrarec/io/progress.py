"""Progress bars (rich) with a time estimate and running values; silent when quiet or in CI.

Whether shown or not, every finished bar leaves one line in the run's ``log.txt`` (when a
``hydrarec.io.log.log_to`` block is open): ``epoch 1/3: 12/12 in 5.9s loss=0.4``. The live frames
themselves go to the terminal only. A bar with a ``delay`` (reading a file, fitting features) is
drawn, and logged, only once its work has lasted that long: short work stays silent (issue 22).
Work that opens no bar of its own gets ``enclosing_progress()``: the one whose bar is open around
it, so ``hydrarec train -q`` also silences the file and feature bars inside "loading data".
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from hydrarec.io.log import log_line, terminal_stream

BAR_WIDTH = 24
SHOW_AFTER_S = 2.0  # the delay of bars for work that may be short (a bar would flicker past)
_console: tuple[TextIO, Console] | None = None  # the terminal's console, see _terminal_console
_open: ContextVar[Progress | None] = ContextVar("hydrarec_open_progress", default=None)


def quiet_by_default() -> bool:
    """No bars in CI or when stdout is not a terminal (a log file or a pipe stays readable)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return True
    isatty = getattr(sys.stdout, "isatty", None)
    return not (isatty is not None and isatty())


def enclosing_enabled() -> bool | None:
    """Whether the bar open around this call draws (None outside every bar)."""
    open_bar = _open.get()
    return None if open_bar is None else open_bar.enabled


def enclosing_progress() -> Progress:
    """The ``Progress`` whose bar is open around this call (nested work keeps its quiet or not);
    outside every bar a silent one: a library call draws nothing unless given a ``Progress``."""
    return _open.get() or Progress(enabled=False)


def _terminal_console() -> Console:
    """One console for the terminal stream: rich draws a bar opened inside another one (a file
    read inside "loading data") below it on the same console, instead of over it."""
    global _console
    stream = terminal_stream()
    if _console is None or _console[0] is not stream:
        _console = (stream, Console(file=stream))
    return _console[1]


class RateColumn(ProgressColumn):
    """Items a second, e.g. ``"310 texts/s"`` (issue 22: a long encoding says how fast it goes)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self.unit}/s")


class Bar:
    def __init__(
        self, progress: RichProgress | None, task_id: TaskID | None, room: int = 0
    ) -> None:
        self._progress = progress
        self._task_id = task_id
        self._room = room  # characters left for the values beside the bar
        self.completed = 0
        self.shown = ""  # the latest running values, "k=v k=v" ("total" first)

    def advance(self, values: dict[str, float] | None = None, n: int = 1) -> None:
        self.completed += n
        if values is not None:
            first = {k: v for k, v in values.items() if k == "total"}
            self.shown = " ".join(f"{k}={v:.4f}" for k, v in (first | values).items())
        if self._progress is None or self._task_id is None:
            return
        self._progress.update(self._task_id, advance=n, values=_fit(self.shown, self._room))


def _fit(text: str, room: int) -> str:
    """``text`` cut to ``room`` characters, so that a narrow terminal keeps the bar itself.

    >>> _fit("total=1.0 a=2.0", 10), _fit("total=1.0", 10)
    ('total=1.0…', 'total=1.0')
    """
    return text if len(text) <= room else text[: max(room - 1, 0)] + "…"


class Progress:
    """``with progress.task("epoch 1", total=n) as bar: bar.advance({"loss": 0.3})``."""

    def __init__(self, enabled: bool | None = None, console: Console | None = None) -> None:
        self.enabled = (not quiet_by_default()) if enabled is None else enabled
        self.console = console  # None: stderr, bypassing the log tee (see hydrarec.io.log)

    @contextmanager
    def task(
        self, description: str, total: int | None, unit: str | None = None, delay: float = 0.0
    ) -> Iterator[Bar]:
        """A bar of ``total`` steps; with ``unit`` (e.g. "texts") it also shows the rate. With a
        ``delay`` (seconds) it is drawn, and logged, only when the work lasts that long."""
        start = time.perf_counter()
        opened = _open.set(self)
        try:
            with self._bar(description, total, unit, delay) as bar:
                yield bar
        finally:
            _open.reset(opened)
        done = f"{bar.completed}/{total}" if total is not None else str(bar.completed)
        seconds = time.perf_counter() - start
        rate = f" ({bar.completed / seconds:,.0f} {unit}/s)" if unit and seconds > 0 else ""
        if seconds >= delay:
            log_line(f"{description}: {done} in {seconds:.1f}s{rate} {bar.shown}".rstrip())

    @contextmanager
    def _bar(
        self, description: str, total: int | None, unit: str | None = None, delay: float = 0.0
    ) -> Iterator[Bar]:
        if not self.enabled:
            yield Bar(None, None)
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=BAR_WIDTH),
            MofNCompleteColumn(),
            *([RateColumn(unit)] if unit else []),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[values]}"),
        )
        console = self.console or _terminal_console()
        room = console.width - len(description) - BAR_WIDTH - 30  # 30: counts, times, spaces
        p = RichProgress(*columns, console=console, transient=False)
        bar = Bar(p, p.add_task(description, total=total, values=""), room)
        show = threading.Timer(delay, p.start)  # rich's own lock guards its updates meanwhile
        show.daemon = True
        if delay > 0:
            show.start()
        else:
            p.start()
        try:
            yield bar
        finally:
            show.cancel()
            if show.is_alive():
                show.join()  # a start under way ends before the stop
            p.stop()  # the last frame stays on the terminal; nothing when never shown
