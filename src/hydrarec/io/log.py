"""Everything printed while working on a run also goes to ``RUN/log.txt`` (issue 6).

``log_to(path)`` tees ``sys.stdout`` and ``sys.stderr`` into the log file, ANSI colour codes
stripped, for as long as the block runs (the ``hydrarec.run`` logger, a file handler per open log,
never the terminal). Rich consoles that were made without a file (the CLI's) look ``sys.stdout``
up at every print, so their tables land in the log too. Live progress bars are
not copied frame by frame: ours draw on ``terminal_stream()``, which bypasses the tee, and write
one summary line per finished bar with ``log_line``; other live displays' redraws (recognised by
their erase-line and cursor-up codes) stay out of the log.

    with log_to(run / "log.txt"):
        console.print(table)          # on the terminal and in log.txt
        log_line("epoch 1/3 done")    # in log.txt only
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

# CSI (colours, cursor moves), OSC (hyperlinks, titles) and lone two-byte escapes
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

# a live display redrawing itself (erase line, cursor up): a frame, not a line of the log
_REDRAW = re.compile(r"\x1b\[2K|\x1b\[\d*A")

_log = logging.getLogger("hydrarec.run")  # the open logs' files; never the terminal
_log.propagate = False
_log.setLevel(logging.INFO)
_open_logs: dict[Path, logging.FileHandler] = {}


def strip_ansi(text: str) -> str:
    r"""``text`` without terminal escape sequences.

    >>> strip_ansi("\x1b[1mbold\x1b[0m and \x1b[31mred\x1b[0m")
    'bold and red'
    """
    return _ANSI.sub("", text)


class _LogFile(logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        raise  # e.g. a full disk: the print fails, as before (logging would print to the tee)


class _Tee:
    """A text stream that writes to ``stream`` and, without escape codes, to the open logs."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        if _open_logs and not _REDRAW.search(text):  # a redraw: e.g. another library's bar
            _log.info(strip_ansi(text))
        return n

    def flush(self) -> None:  # the handlers flush at each record
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... of the terminal
        return getattr(self.stream, name)


def terminal_stream(stream: TextIO | None = None) -> TextIO:
    """``stream`` (default ``sys.stderr``) without the log tee: for live displays."""
    stream = sys.stderr if stream is None else stream
    while isinstance(stream, _Tee):
        stream = stream.stream
    return stream


def log_line(text: str) -> None:
    """Append one line to every open log, not to the terminal."""
    _log.info(strip_ansi(text).rstrip("\n") + "\n")


@contextmanager
def log_to(path: str | Path, header: str | None = None) -> Iterator[Path]:
    """Tee stdout and stderr into ``path`` (appended) while the block runs.

    Re-entrant: a nested ``log_to`` of a file already open writes nothing twice. Each outermost
    block starts with a time-stamped header line (``header`` or the command line).
    """
    key = Path(path).resolve()
    if key in _open_logs:
        yield key
        return
    key.parent.mkdir(parents=True, exist_ok=True)
    saved = sys.stdout, sys.stderr
    handler = _LogFile(key, encoding="utf-8")  # appends each text as it is given
    handler.terminator = ""
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    handler.handle(logging.makeLogRecord({"msg": f"# {stamp} {header or command}\n"}))
    _open_logs[key] = handler
    _log.addHandler(handler)
    if not isinstance(sys.stdout, _Tee):
        sys.stdout = _Tee(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Tee):
        sys.stderr = _Tee(sys.stderr)  # type: ignore[assignment]
    try:
        yield key
    except BaseException as e:  # the log says how the command ended; the error propagates
        handler.handle(logging.makeLogRecord({"msg": f"failed: {type(e).__name__}: {e}\n"}))
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _log.removeHandler(handler)
        handler.close()
        del _open_logs[key]
        if not _open_logs:
            sys.stdout, sys.stderr = saved
