"""Atomic writes (``hydrarec.io.atomic``) give the target the mode a plain ``open`` would: 0666 less
the umask. mkstemp's 0600 used to survive the rename, so config.toml, metrics.json and the others
were unreadable to the group, unlike history.jsonl beside them (issue 21)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from hydrarec.io.atomic import atomic_paths, write_json, write_tensors, write_text, write_with

WRITERS: dict[str, Callable[[Path], None]] = {
    "write_text": lambda p: write_text(p, "x = 1\n"),
    "write_json": lambda p: write_json(p, {"a": 1}),
    "write_tensors": lambda p: write_tensors(p, {"w": torch.zeros(2)}),
    "write_with": lambda p: write_with(p, lambda tmp: tmp.write_bytes(b"data")),
}


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test; the previous one is restored after it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(
    tmp_path: Path, umask: Callable[[int], None], writer: str, mask: int, mode: int
) -> None:
    umask(mask)
    target = tmp_path / "sub" / "file"
    WRITERS[writer](target)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    plain = tmp_path / "plain"  # what open() gives under the same umask: the same mode
    plain.write_text("")
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with(target, fail)
    assert target.read_text() == '{\n  "old": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_several_files_are_all_written_or_none(tmp_path: Path) -> None:
    """``atomic_paths`` (add-items' commit): a failure while writing the second file leaves the
    first target as it was; on success the targets are renamed in the order given."""
    first, second = tmp_path / "items.json", tmp_path / "model.json"
    write_text(first, "old")
    with pytest.raises(OSError, match="disk full"), atomic_paths(first, second) as (a, b):
        a.write_text("new")
        raise OSError("disk full")
    assert first.read_text() == "old" and not second.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["items.json"]

    renamed: list[str] = []
    real_replace = os.replace

    def spy(src: Path, dst: Path) -> None:
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", spy)
        with atomic_paths(first, second) as (a, b):
            a.write_text("new")
            b.write_text("{}")
    assert renamed == ["items.json", "model.json"] and first.read_text() == "new"
