"""A tiny synthetic multi-task config that trains in about a second (used by several tests)."""

from __future__ import annotations

from typing import Any

from hydrarec.config import Config, config_from_dict


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
