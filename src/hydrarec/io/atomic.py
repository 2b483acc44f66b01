"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or Ctrl-C mid-write leaves the previous file intact, never a half-written one. The
temporary file is created with mode 0666 less the umask, as ``open`` would create the target:
``tempfile.mkstemp``'s 0600 would otherwise survive the rename (issue 21: ``config.toml`` and
``metrics.json`` ended up unreadable to the group, unlike ``history.jsonl`` beside them).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def temp_beside(path: str | Path) -> Path:
    """Create an empty temporary file in ``path``'s folder (made if missing) and return it.

    Its mode is 0666 less the umask (the kernel applies the umask to ``os.open``'s mode); the
    caller writes it and renames it onto ``path``, or deletes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # another writer's temporary file: draw another name
            continue
        return tmp


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield a temporary path for each of ``paths``; on success each replaces its target, in the
    order given (a reader that checks the last file finds the others already in place)."""
    temps: list[Path] = []
    try:
        temps.extend(temp_beside(path) for path in paths)
        modes = [stat.S_IMODE(tmp.stat().st_mode) for tmp in temps]
        yield temps
        for tmp, mode, path in zip(temps, modes, paths, strict=True):
            if stat.S_IMODE(tmp.stat().st_mode) != mode:  # a writer that made its own file
                os.chmod(tmp, mode)  # (safetensors' save_file creates it 0600)
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` atomically."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as JSON; numpy and torch scalars and arrays, and paths, as plain values."""
    return json.dumps(obj, indent=indent, sort_keys=False, default=_json_default)


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as a JSON file that any JSON reader takes: a NaN or an infinity, which JSON has no
    number for (RFC 8259; ``json.dumps`` writes the invalid ``NaN`` / ``Infinity``), is written
    as ``null``, no value, as the HTTP answers write it (issue 21: an infinite rating put
    ``Infinity`` in metrics.json). ``json_text`` keeps them, for files only hydrarec reads back
    (a checkpoint's state resumes exactly)."""
    try:
        text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: its token becomes null
        text = json_text(json.loads(json_text(obj), parse_constant=lambda _: None))
    write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """safetensors: plain tensors, nothing executable (unlike pickle); ``metadata`` goes in the
    file's header."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write ``path`` with a function that writes to a given path (e.g. to_parquet)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _json_default(o: Any) -> Any:
    if getattr(o, "ndim", 0) and hasattr(o, "tolist"):  # an array: item() takes one element
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
