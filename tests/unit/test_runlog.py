"""Everything printed while working on a run also goes to RUN/log.txt (issue 6)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from rich.console import Console

from hydrarec.io.log import log_line, log_to
from hydrarec.io.progress import Progress


def test_printed_lines_reach_the_log_and_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "run" / "log.txt"
    console = Console(force_terminal=True)  # colours on: the log must get them stripped
    with log_to(log, header="hydrarec test"):
        print("plain print")
        console.print("[bold red]rich print[/bold red]")
        print("to stderr", file=sys.stderr)
        log_line("log only")
    text = log.read_text(encoding="utf-8")
    assert text.splitlines()[0].endswith("hydrarec test")
    assert text.splitlines()[1:] == ["plain print", "rich print", "to stderr", "log only"]
    assert "\x1b" not in text
    out, err = capsys.readouterr()
    assert "plain print" in out and "\x1b[" in out  # the terminal keeps its colours
    assert err == "to stderr\n"
    assert "log only" not in out + err


def test_progress_leaves_one_line_per_bar_even_when_quiet(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with log_to(log), Progress(enabled=False).task("epoch 1/2", total=3) as bar:
        for loss in (0.9, 0.6, 0.3):
            bar.advance({"loss": loss, "total": loss * 2})
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 1/2: 3/3 in ")
    assert lines[1].endswith("s total=0.6000 loss=0.3000")  # the total first, then the rest


def test_nested_logs_of_one_file_write_once_and_streams_come_back(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    stdout, stderr = sys.stdout, sys.stderr
    with log_to(log), log_to(tmp_path / "." / "log.txt"):
        print("once")
    assert sys.stdout is stdout and sys.stderr is stderr
    assert log.read_text(encoding="utf-8").count("once") == 1
    with log_to(log):  # appends, with a new header
        print("again")
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if not line.startswith("# ")] == ["once", "again"]


def test_a_failure_is_logged_and_raised(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with pytest.raises(ValueError, match="boom"), log_to(log):
        print("before")
        raise ValueError("boom")
    assert log.read_text(encoding="utf-8").splitlines()[1:] == [
        "before",
        "failed: ValueError: boom",
    ]
    print("after")  # the tee is gone: nothing more reaches the file
    assert "after" not in log.read_text(encoding="utf-8")


def test_live_redraws_of_other_progress_bars_stay_out_of_the_log(tmp_path: Path) -> None:
    from rich.progress import track

    log = tmp_path / "log.txt"
    console = Console(force_terminal=True)  # redraws with cursor codes, as on a terminal
    with log_to(log):
        for _ in track(range(3), description="encoding", console=console, transient=True):
            pass
        print("done")
    assert log.read_text(encoding="utf-8").splitlines()[1:] == ["done"]


def test_a_log_that_cannot_be_written_fails_the_print(tmp_path: Path) -> None:
    """A full disk is an error of the print, raised once; logging's own handling would print the
    error to stderr, which is the tee, which logs again."""

    class Full:
        def write(self, text: str) -> None:
            raise OSError("No space left on device")

        def flush(self) -> None:
            pass

    with log_to(tmp_path / "log.txt") as path:
        handlers = logging.getLogger("hydrarec.run").handlers
        handler = next(h for h in handlers if getattr(h, "baseFilename", "") == str(path))
        handler.stream = Full()  # type: ignore[attr-defined]
        with pytest.raises(OSError, match="No space left"):
            print("x")
