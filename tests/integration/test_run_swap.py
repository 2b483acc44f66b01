"""Training into an existing run directory (issue 21): a complete run is replaced only when
asked, and always whole (the run is built in RUN.partial and swapped in when complete; the kills
themselves are in test_crash_resume.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from tests.integration.tiny import tiny_config, tiny_raw

from hydrarec.cli import main
from hydrarec.config import config_from_dict, dump_config
from hydrarec.errors import RunError
from hydrarec.io.progress import Progress
from hydrarec.run.train import train

QUIET = Progress(enabled=False)


def files(run: Path) -> dict[str, bytes]:
    """Every file of a run but its log, by path."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != "log.txt"
    }


@pytest.fixture
def complete(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run, to be trained over."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def test_a_complete_run_is_not_replaced_unasked(complete: Path) -> None:
    before = files(complete)
    with pytest.raises(RunError, match=r"run holds a complete run: pass --overwrite"):
        train(tiny_config(epochs=1), complete, progress=QUIET)
    assert files(complete) == before
    assert sorted(p.name for p in complete.parent.iterdir()) == ["run"]


def test_the_cli_refuses_a_complete_run_without_overwrite(
    complete: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = complete.parent / "c.toml"
    config.write_text(dump_config(config_from_dict(tiny_raw(epochs=1))))
    before = files(complete)
    saved = sys.argv
    sys.argv = ["hydrarec", "train", "-c", str(config), "-o", str(complete), "-q"]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = saved
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"{complete} holds a complete run: pass --overwrite" in err
    assert files(complete) == before


def test_overwrite_replaces_the_run_whole(complete: Path) -> None:
    before = files(complete)
    run = train(tiny_config(epochs=1), complete, overwrite=True, progress=QUIET)
    assert run.path == complete and run.metrics["train"]["epochs"] == 1
    after = files(complete)
    assert after["model.safetensors"] != before["model.safetensors"]
    assert {"metrics.json", "index/source.json", "checkpoints/last.safetensors"} <= set(after)
    assert sorted(p.name for p in complete.parent.iterdir()) == ["run"]  # nothing beside it
    log = (complete / "log.txt").read_text()
    assert log.count("\n# ") >= 1  # the old run's log, then this training's


def test_resuming_a_complete_run_keeps_it_until_the_copy_is_complete(complete: Path) -> None:
    """``--resume`` of a finished run: a copy in RUN.partial continues from the last checkpoint
    (here nothing is left to train) and is swapped in; the same metrics."""
    before = files(complete)
    run = train(tiny_config(), complete, resume=True, progress=QUIET)
    stored = json.loads(before["metrics.json"])
    assert run.metrics["test"] == pytest.approx(stored["test"], abs=1e-6)
    assert files(complete)["model.safetensors"] == before["model.safetensors"]
    assert sorted(p.name for p in complete.parent.iterdir()) == ["run"]


def test_a_folder_of_other_files_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match=r"mine is not empty \(notes.txt\) and not a hydrarec run"):
        train(tiny_config(epochs=1), out, progress=QUIET)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(RunError, match=r"is a file, not a run directory"):
        train(tiny_config(epochs=1), out / "notes.txt", progress=QUIET)


def test_every_file_of_a_run_has_the_mode_open_gives(tiny_run: Path) -> None:
    """0666 less the umask, as log.txt (issue 21: the files written atomically kept mkstemp's
    0600, so config.toml, metrics.json, features.json and others were unreadable to the group)."""
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {
        str(p.relative_to(tiny_run)): stat.S_IMODE(p.stat().st_mode)
        for p in tiny_run.rglob("*")
        if p.is_file()
    }
    assert {"config.toml", "metrics.json", "features/features.json", "log.txt"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
