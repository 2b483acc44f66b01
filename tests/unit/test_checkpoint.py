"""A training checkpoint is one file, checked on load (issue 21).

The earlier format wrote ``last.safetensors`` then ``last.json``: a kill between the two left
epoch-2 weights beside epoch-1 counters, and resuming went on silently. Every way a checkpoint
can be wrong here must be a ``RunError`` that names the file, never a resume and never a raw
traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hydrarec.errors import RunError
from hydrarec.training import checkpoint

STATE = {
    "model": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)},
    "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}, "param_groups": [{"lr": 0.01}]},
    "loop": {"epoch": 2, "step": 22, "best": 0.5, "history": [{"epoch": 1}, {"epoch": 2}]},
}


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    stem = tmp_path / "checkpoints" / "last"
    checkpoint.save_state(stem, STATE)
    return stem


def test_one_file_round_trips(stem: Path) -> None:
    assert sorted(p.name for p in stem.parent.iterdir()) == ["last.safetensors"]
    state = checkpoint.load_state(stem)
    assert state["loop"] == STATE["loop"]
    assert state["optimizer"]["state"][0]["step"] == torch.tensor(4.0)  # int keys come back
    torch.testing.assert_close(state["model"]["w"], STATE["model"]["w"], rtol=0, atol=0)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last tensor's last byte: the header stays valid
    path.write_bytes(bytes(data))


def test_a_changed_tensor_byte_is_refused(stem: Path) -> None:
    _flip_last_byte(checkpoint.file_of(stem))
    with pytest.raises(RunError, match=r"last\.safetensors: the SHA-256 of its counters and"):
        checkpoint.load_state(stem)


def test_a_truncated_file_is_refused(stem: Path) -> None:
    path = checkpoint.file_of(stem)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RunError, match=r"last\.safetensors: not a readable safetensors"):
        checkpoint.load_state(stem)


def test_a_header_naming_other_counters_is_refused(stem: Path) -> None:
    """The tensors of one save with the counters of another (what the two-file format let a
    kill produce): the recorded checksum is the other save's."""
    path = checkpoint.file_of(stem)
    other = stem.with_name("other")
    epoch_1 = {"model": {"w": torch.zeros(2, 3), "b": torch.ones(2)}, "loop": {"epoch": 1}}
    checkpoint.save_state(other, STATE | epoch_1)
    with safe_open(str(checkpoint.file_of(other)), "pt") as f:
        header = f.metadata()
    save_file(load_file(str(path)), str(path), metadata=header)
    with pytest.raises(RunError, match=r"last\.safetensors: .* damaged or edited"):
        checkpoint.load_state(stem)


def test_the_two_file_format_is_refused(tmp_path: Path) -> None:
    stem = tmp_path / "last"
    save_file({"s.model.w": torch.zeros(2)}, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(json.dumps({"loop": {"epoch": 1}}))
    with pytest.raises(RunError, match=r"last\.safetensors: a two-file checkpoint .* last\.json"):
        checkpoint.load_state(stem)


def test_other_safetensors_files_are_refused(tmp_path: Path) -> None:
    stem = tmp_path / "last"
    save_file({"w": torch.zeros(2)}, str(stem.with_suffix(".safetensors")))  # model weights
    with pytest.raises(RunError, match="not a hydrarec checkpoint"):
        checkpoint.load_state(stem)
    save_file({"w": torch.zeros(2)}, str(stem.with_suffix(".safetensors")),
              metadata={checkpoint.HEADER_KEY: "{not json"})  # fmt: skip
    with pytest.raises(RunError, match="header entry is not JSON"):
        checkpoint.load_state(stem)
    with pytest.raises(RunError, match="no checkpoint to resume from"):
        checkpoint.load_state(tmp_path / "missing")
