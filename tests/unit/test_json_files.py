"""``io.write_json`` writes JSON any reader takes: no ``NaN`` or ``Infinity`` tokens (issue 21:
an infinite rating in the test file made metrics.json hold ``Infinity``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hydrarec.io.atomic import json_text, read_json, write_json


def strict_load(path: Path) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in {path.name}: not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    metrics = {
        "test": {"rating/rmse": float("inf"), "rating/mae": np.float32("nan"), "hr@10": 0.5},
        "history": [1.0, -float("inf"), np.float64(2.5)],
        "weights": torch.tensor([float("nan"), 1.0]),  # arrays too (item() took one element)
        "counts": np.array([[1, 2]]),
        "epochs": 3,
    }
    path = tmp_path / "metrics.json"
    write_json(path, metrics)
    assert strict_load(path) == {
        "test": {"rating/rmse": None, "rating/mae": None, "hr@10": 0.5},
        "history": [1.0, None, 2.5],
        "weights": [None, 1.0],
        "counts": [[1, 2]],
        "epochs": 3,
    }


def test_finite_files_are_written_as_before(tmp_path: Path) -> None:
    obj = {"a": [1, 2.5, "x"], "b": {"c": None, "d": np.int64(4)}}
    write_json(tmp_path / "f.json", obj)
    assert (tmp_path / "f.json").read_text() == json_text(obj) + "\n"
    assert read_json(tmp_path / "f.json") == {"a": [1, 2.5, "x"], "b": {"c": None, "d": 4}}
