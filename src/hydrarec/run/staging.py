"""Where a run is trained: beside its final place, swapped in only when complete.

``train(cfg, out=RUN)`` builds the run in ``RUN.partial``. Once every file of it is written
(weights, ``metrics.json``, ``index/``), ``swap_in`` moves the previous ``RUN`` aside to
``RUN.old``, renames ``RUN.partial`` to ``RUN`` and deletes ``RUN.old``. A kill at any moment
thus leaves the previous complete run at ``RUN``, or (between the two renames) no run there;
never a mix of two runs' files, such as new weights beside the old ``metrics.json``.

- A complete run at ``RUN`` is replaced only when asked (``overwrite``, ``--overwrite``).
- ``resume`` continues ``RUN.partial`` when it exists (a killed training, before or after its
  first checkpoint, or killed between the swap's two renames); else, when ``RUN`` itself has a
  checkpoint (a complete run, e.g. given more epochs), it continues a copy of ``RUN`` in
  ``RUN.partial``; else it starts afresh, as without ``resume``.
- ``RUN/log.txt`` is where the command logs while it trains (every attempt, the killed ones
  too); the swap moves it into the new run, the open log file with it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hydrarec.errors import RunError
from hydrarec.run.rundir import RunDir
from hydrarec.training import checkpoint
from hydrarec.training.distributed import Distributed

PARTIAL = ".partial"  # RUN.partial: the run being trained
OLD = ".old"  # RUN.old: the previous run, during the swap
COPYING = ".partial-copy"  # RUN.partial-copy: a complete run being copied for resume
# what may sit in an output folder that holds no run: the log of a failed or refused attempt
NOT_A_RUN = {"log.txt"}
# any of these marks a folder as a hydrarec run (complete or not), which training may replace
RUN_MARKS = ("config.toml", "model.json", "model.safetensors", "checkpoints")


def sibling(out: str | Path, suffix: str) -> Path:
    """``out`` with ``suffix`` added to its name, in the same folder (so renames are atomic)."""
    path = Path(os.path.abspath(out))
    return path.with_name(path.name + suffix)


def is_complete(run: RunDir) -> bool:
    """Whether ``run`` holds a finished training: config, weights, model sizes and metrics."""
    return all(p.is_file() for p in (run.config, run.meta, run.model, run.metrics))


def build_dir(out: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Make ready and return the folder to train ``out`` in (``out.partial``, see above).

    ``RunError`` when ``out`` is a complete run and neither ``resume`` found something to
    continue nor ``overwrite`` was given, or when ``out`` is a file or a folder of other files.
    """
    out = Path(out)
    partial = sibling(out, PARTIAL)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file, not a run directory")
    if resume and partial.is_dir():
        return partial
    run = RunDir(out)
    if resume and checkpoint.exists(run.checkpoints / "last"):
        copying = sibling(out, COPYING)
        _remove(copying)
        _remove(partial)
        # copied whole, then renamed: a kill mid-copy leaves no half copy to resume from
        shutil.copytree(out, copying, ignore=shutil.ignore_patterns(*NOT_A_RUN))
        os.replace(copying, partial)
        return partial
    if is_complete(run) and not overwrite:
        raise RunError(
            f"{out} holds a complete run: pass --overwrite (train(..., overwrite=True)) to "
            "replace it with a new one, or --resume to continue its training"
        )
    _check_replaceable(out)
    _remove(partial)
    partial.mkdir(parents=True)
    return partial


def prepare(out: str | Path, *, resume: bool, overwrite: bool, dist: Distributed) -> Path:
    """``build_dir`` on rank 0; every rank gets its path, or the same ``RunError``."""

    def on_main() -> tuple[str, str | None]:
        try:
            return str(build_dir(out, resume=resume, overwrite=overwrite)), None
        except RunError as e:  # raised on every rank, not only on rank 0 (the others would wait)
            return "", str(e)

    where, error = dist.from_main(on_main)
    if error is not None:
        raise RunError(error)
    return Path(where)


def swap_in(partial: Path, out: str | Path) -> None:
    """Put the complete run ``partial`` at ``out``; the previous run there is deleted."""
    out = Path(os.path.abspath(out))
    old = sibling(out, OLD)
    _remove(old)  # left by a swap killed before its end
    if out.exists():
        log = out / "log.txt"
        if log.is_file():  # the open log file follows its name into the new run
            os.replace(log, partial / log.name)
        os.replace(out, old)
    os.replace(partial, out)  # from here the new run is at out
    _remove(old)


def _check_replaceable(out: Path) -> None:
    """Training replaces ``out`` as a whole: refuse a folder that holds other files."""
    if not out.is_dir():
        return
    names = {p.name for p in out.iterdir()}
    if names <= NOT_A_RUN or any(mark in names for mark in RUN_MARKS):
        return
    shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
    raise RunError(
        f"{out} is not empty ({shown}) and not a hydrarec run: training would replace the whole "
        "folder; give --out a new or empty folder"
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
