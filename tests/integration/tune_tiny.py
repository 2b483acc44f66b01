"""The config and space the ``hydrarec tune`` tests search (issue 24): one retrieval task on a
tiny synthetic dataset, two epochs, so that a trial trains in about a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from hydrarec.config import Config, config_from_dict, dump_config

SPACE = {"model.dim": [4, 8], "train.lr": {"low": 0.002, "high": 0.05, "log": True}}


def tune_raw(**train: Any) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "synthetic",
            "synthetic": {"n_users": 40, "n_items": 60, "n_interactions": 600, "seed": 0},
            "split": {"kind": "leave_last_out"},
        },
        "model": {
            "dim": 8,
            "embedding_dim": 4,
            "tower_hidden": [8],
            "sequence": {"kind": "transformer", "max_len": 5, "layers": 1, "heads": 2},
            "architecture": {"name": "single"},
        },
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu", **train},
        "eval": {"ks": [10]},
        "tasks": [{"name": "retrieval", "kind": "retrieval"}],
    }


def tune_config(**train: Any) -> Config:
    return config_from_dict(tune_raw(**train))


def write_inputs(folder: Path, space: str, **train: Any) -> tuple[Path, Path]:
    """The config and space as files, for the command line."""
    folder.mkdir(parents=True, exist_ok=True)
    config, space_file = folder / "config.toml", folder / "space.toml"
    config.write_text(dump_config(tune_config(**train)))
    space_file.write_text(space)
    return config, space_file


def load(out: Path, name: str | None = None) -> optuna.Study:
    """The study a test's ``tune`` wrote to ``out/study.db`` (named after ``out`` by default)."""
    storage = f"sqlite:///{out / 'study.db'}"
    return optuna.load_study(study_name=name or out.name, storage=storage)


def enqueue(out: Path, direction: str, *values: dict[str, Any]) -> None:
    """Create the study ``tune`` will open in ``out`` and queue trials with chosen values:
    tests decide which values run instead of relying on the sampler's draws."""
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'study.db'}", study_name=out.name, direction=direction
    )
    for v in values:
        study.enqueue_trial(v)
