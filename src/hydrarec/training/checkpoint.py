"""Checkpoints as safetensors + JSON (no pickle: loading executes nothing from the file).

A training checkpoint holds the model, the joint-loss module, the optimizer and scheduler state,
the torch RNG state and the loop's counters, so that resuming gives the same result as an
uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hydrarec.io import read_json, read_tensors, write_json, write_tensors


def _flatten(prefix: str, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors of a nested state dict into ``tensors``; return the JSON-able rest."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {str(k): _flatten(f"{prefix}.{k}", v, tensors) for k, v in state.items()} | {
            "__keys__": [[type(k).__name__, k] for k in state]
        }
    if isinstance(state, (list, tuple)):
        return [_flatten(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)]
    return state


def _unflatten(meta: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(meta, dict) and "__tensor__" in meta:
        return tensors[meta["__tensor__"]]
    if isinstance(meta, dict):
        keys = meta.get("__keys__", [])
        out = {}
        for kind, k in keys:
            key = int(k) if kind == "int" else k
            out[key] = _unflatten(meta[str(k)], tensors)
        return out
    if isinstance(meta, list):
        return [_unflatten(v, tensors) for v in meta]
    return meta


def save_state(path_stem: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and JSON values) as STEM.safetensors + STEM.json.

    The tensors file is written first; the JSON, written last, marks the checkpoint complete.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta = _flatten("s", state, tensors)
    write_tensors(path_stem.with_suffix(".safetensors"), tensors)
    write_json(path_stem.with_suffix(".json"), meta)


def load_state(path_stem: Path) -> dict[str, Any]:
    tensors = read_tensors(path_stem.with_suffix(".safetensors"))
    meta = read_json(path_stem.with_suffix(".json"))
    state = _unflatten(meta, tensors)
    assert isinstance(state, dict)
    return state


def exists(path_stem: Path) -> bool:
    return (
        path_stem.with_suffix(".json").is_file() and path_stem.with_suffix(".safetensors").is_file()
    )
