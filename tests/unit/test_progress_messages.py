"""Long work says what it does and how fast (issue 22): the rate of a bar with a unit, no bars
when stdout is not a terminal, and item text encoding says plainly whether it hit the cache."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from hydrarec.config import TextConfig
from hydrarec.features.text import TextEncoder
from hydrarec.io.log import log_to
from hydrarec.io.progress import Progress, quiet_by_default


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bars_when_stdout_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert quiet_by_default() and not Progress().enabled
    monkeypatch.setattr("sys.stdout", Terminal())
    assert not quiet_by_default() and Progress().enabled
    monkeypatch.setenv("CI", "true")
    assert quiet_by_default()


def test_a_bar_with_a_unit_logs_its_rate(tmp_path: Path) -> None:
    with log_to(tmp_path / "log.txt"), Progress(enabled=False).task("encoding", 6, "texts") as bar:
        bar.advance(n=4)
        bar.advance(n=2)
    line = (tmp_path / "log.txt").read_text().splitlines()[-1]
    assert re.fullmatch(r"encoding: 6/6 in \d+\.\ds \([\d,]+ texts/s\)", line), line


def test_text_encoding_says_whether_it_hit_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["Heat", "Alien", "Up"]})
    cfg = TextConfig(enabled=True, cache_dir=str(tmp_path))
    first = TextEncoder(cfg, progress=True)
    first.encode_items(items)
    said = capsys.readouterr().err
    assert "item text: encoding 3 texts with all-MiniLM-L6-v2 (not in the cache yet" in said
    assert first.texts_encoded == 3
    again = TextEncoder(cfg, progress=True)
    again.encode_items(items)
    said = capsys.readouterr().err
    assert "item text: 3 vectors read from the cache" in said and "not loaded" in said
    assert again.texts_encoded == 0
    with log_to(tmp_path / "log.txt"):
        TextEncoder(cfg, progress=False).encode_items(items)
    assert capsys.readouterr().err == ""  # quiet: the run log has it, the terminal does not
    assert "vectors read from the cache" in (tmp_path / "log.txt").read_text()
