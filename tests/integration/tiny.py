"""A tiny synthetic multi-task config that trains in about a second (used by several tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hydrarec.config import Config, config_from_dict
from hydrarec.io.progress import Progress
from hydrarec.run.train import train
from hydrarec.training.trainer import Trainer

KEY = "test-key-123"  # the API key the service tests set
AUTH = {"X-API-Key": KEY}


def tiny_raw(**train: Any) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "synthetic",
            "synthetic": {"n_users": 60, "n_items": 40, "n_interactions": 1500, "seed": 1},
            "split": {"kind": "leave_last_out"},
        },
        "model": {
            "dim": 16,
            "embedding_dim": 8,
            "tower_hidden": [32],
            "sequence": {"kind": "transformer", "max_len": 8, "layers": 1, "heads": 2},
            "architecture": {"name": "mmoe", "hidden": [16], "tower": [8], "experts": 2},
        },
        "train": {"epochs": 2, "batch_size": 128, "lr": 0.01, "seed": 0, **train},
        "tasks": [
            {"name": "retrieval", "kind": "retrieval"},
            {"name": "rating", "kind": "rating", "column": "rating"},
            {"name": "like", "kind": "binary", "rule": "rating >= 4"},
            {"name": "genres", "kind": "reconstruction", "entity": "item", "feature": "genres"},
        ],
        "recommend": {"blend": {"like": 1.0, "rating": 0.5}, "candidates": 20},
    }


def tiny_config(**train: Any) -> Config:
    return config_from_dict(tiny_raw(**train))


class Interrupted(Exception):
    """Raised in place of a Ctrl-C by ``train_until``."""


def train_until(cfg: Config, out: Path, epoch: int) -> None:
    """Train ``cfg`` into ``out`` and stop right after the checkpoint of ``epoch`` is written, as
    an interrupt would: what resuming must continue from."""
    original = Trainer._save_checkpoint

    def save_then_stop(self: Trainer) -> None:
        original(self)
        if self.state.epoch == epoch:
            raise Interrupted

    Trainer._save_checkpoint = save_then_stop  # type: ignore[method-assign]
    try:
        with pytest.raises(Interrupted):
            train(cfg, out, progress=Progress(enabled=False))
    finally:
        Trainer._save_checkpoint = original  # type: ignore[method-assign]
