"""Checkpoints: one safetensors file whose header holds the JSON part (no pickle: loading
executes nothing from the file).

A training checkpoint holds the model, the joint-loss module, the optimizer and scheduler state,
the torch RNG state and the loop's counters, so that resuming gives the same result as an
uninterrupted run. It is ONE file, written atomically (temporary file + rename), so a kill leaves
the previous checkpoint or the new one, never one's weights with the other's counters (which a
resume would continue from silently). The header also records the SHA-256 of the JSON part and
the tensors, checked on load: a damaged or edited file is a ``RunError`` naming it, never a
resume from whatever it holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from hydrarec.errors import RunError
from hydrarec.io.atomic import json_text, write_tensors

FORMAT = "hydrarec-checkpoint-2"
HEADER_KEY = "hydrarec.checkpoint"  # the safetensors metadata entry that holds the JSON part


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


def _digest(state_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the JSON part, then every tensor's name, dtype, shape and bytes, by name."""
    h = hashlib.sha256(state_text.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # the raw bytes, any dtype
    return h.hexdigest()


def file_of(path_stem: Path) -> Path:
    return path_stem.with_suffix(".safetensors")


def save_state(path_stem: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and JSON values) as one file, STEM.safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    meta = _flatten("s", state, tensors)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    state_text = json_text(meta, indent=None)
    header = {"format": FORMAT, "sha256": _digest(state_text, tensors), "state": state_text}
    write_tensors(file_of(path_stem), tensors, {HEADER_KEY: json_text(header, indent=None)})


def load_state(path_stem: Path) -> dict[str, Any]:
    """The state ``save_state`` wrote; ``RunError`` naming the file if it is missing, unreadable,
    of another format, or its tensors are not the ones its header records."""
    path = file_of(path_stem)
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint to resume from")
    try:
        with safe_open(str(path), "pt") as f:
            header_text = (f.metadata() or {}).get(HEADER_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as e:
        raise RunError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if header_text is None:
        legacy = path_stem.with_suffix(".json")
        why = (
            f"a two-file checkpoint of an earlier hydrarec (with {legacy.name}), whose two "
            "files cannot be checked against each other"
            if legacy.is_file()
            else f"not a hydrarec checkpoint (no {HEADER_KEY!r} entry in its header)"
        )
        raise RunError(f"{path}: {why}; train again without --resume")
    try:
        header = json.loads(header_text)
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: the {HEADER_KEY!r} header entry is not JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise RunError(f"{path}: checkpoint format {found!r}, expected {FORMAT!r}")
    state_text = header.get("state")
    if not isinstance(state_text, str):
        raise RunError(f"{path}: the checkpoint header has no 'state' text")
    digest = _digest(state_text, tensors)
    if digest != header.get("sha256"):
        raise RunError(
            f"{path}: the SHA-256 of its counters and tensors is {digest}, the header records "
            f"{header.get('sha256')}: the file was damaged or edited; train again without --resume"
        )
    try:
        state = _unflatten(json.loads(state_text), tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path}: the header names a tensor the file lacks ({e})") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: the checkpoint holds a {type(state).__name__}, expected a dict")
    return state


def exists(path_stem: Path) -> bool:
    return file_of(path_stem).is_file()
