"""Reading a run's files: whatever is wrong with one is a `RunError` naming the file (issue 21).

A run directory can be damaged (a copy cut short, a full disk) or edited by hand; loading it must
say which file is wrong and how, never end in a raw traceback. Tensors must also be finite: NaN
weights once made ``recommend`` return ``None`` ids with ``-inf`` scores, and the CLI printed an
empty table with exit code 0.

Nothing here executes code from a file: a pickle (``torch.save`` output) where safetensors belong
is recognised by its first bytes and refused, never unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from hydrarec.errors import RunError

_PICKLE_STARTS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# torch.save's zip archive, or a bare pickle of protocol 2 to 5


def read_tensor_file(path: str | Path, *, finite: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; with ``finite``, a NaN or inf value is a `RunError`
    naming the tensor."""
    path = Path(path)
    head = _head(path, "a safetensors file")
    safetensors = head[8:9] == b"{"  # an 8-byte header length, then the JSON header
    if not safetensors and head.startswith(_PICKLE_STARTS):
        raise RunError(
            f"{path}: a pickle (torch.save output), not safetensors; refused, since loading a "
            "pickle can run code"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunError(f"{path}: not a readable safetensors file ({e})") from None
    if finite:
        check_finite(tensors, path)
    return tensors


def check_finite(tensors: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Every floating tensor of ``tensors`` (read from ``path``) holds finite values only."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise RunError(
                f"{path}: tensor {name!r} holds {bad:,} non-finite value(s) (NaN or inf) of "
                f"{t.numel():,}; the weights are damaged (retrain, or restore the file)"
            )


def read_json_file(path: str | Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object with at least ``keys``."""
    path = Path(path)
    _head(path, "a JSON file")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: a JSON {type(obj).__name__}, expected an object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise RunError(f"{path}: no {missing[0]!r} (expected keys {', '.join(keys)})")
    return obj


def read_parquet_file(path: str | Path, columns: Sequence[str] = ()) -> pd.DataFrame:
    """A Parquet table with at least ``columns``."""
    path = Path(path)
    _head(path, "a Parquet file")
    try:
        df = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise RunError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RunError(f"{path}: no column {missing[0]!r} (expected {', '.join(columns)})")
    return df


def _head(path: Path, what: str) -> bytes:
    """The first bytes of ``path``; a missing or unreadable file is a `RunError`."""
    try:
        with open(path, "rb") as fh:
            return fh.read(9)
    except FileNotFoundError:
        raise RunError(f"{path}: missing (expected {what})") from None
    except OSError as e:
        raise RunError(f"{path}: cannot be read ({e})") from None
