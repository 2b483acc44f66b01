"""Scoring a run: validation during training (the monitored metric), ``evaluate(run,
split)`` of a trained run on valid or test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hydrarec.config import Config
from hydrarec.errors import ConfigError
from hydrarec.evaluation.evaluate import evaluate_model
from hydrarec.io.progress import Progress
from hydrarec.model.ensemble import Ensemble
from hydrarec.model.multitask import MultiTaskRecommender
from hydrarec.run.data import TrainData
from hydrarec.run.rundir import LoadedRun, load_run

# the interactions a split's users are known to have had before it: excluded from its ranking
# and read as their history
KNOWN_BEFORE = {"valid": ("train",), "test": ("train", "valid")}
SELECTION = "selection"  # RUN/selection: the run that chose a refit's epochs (train.refit)


def ranks_held_out_items(cfg: Config) -> bool:
    """Whether retrieval is scored by ranking the held-out items among themselves: on a cold-item
    split, as the COLD protocol does, so that validation chooses the checkpoint that ranks new
    items best and ``hydrarec evaluate`` reports that figure."""
    return cfg.data.split.kind == "cold_item"


def validator(
    cfg: Config, data: TrainData, device: torch.device, progress: Progress | None = None
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """Validation metrics of every task (the trainer monitors one of them)."""
    rows = data.split.valid
    inter = data.dataset.interactions
    users, items = inter["user_idx"].to_numpy()[rows], inter["item_idx"].to_numpy()[rows]
    labels = {k: v[rows] for k, v in data.labels.items()}
    known = data.histories(KNOWN_BEFORE["valid"])

    def validate(model: torch.nn.Module) -> dict[str, float]:
        assert isinstance(model, (MultiTaskRecommender, Ensemble))
        with (progress or Progress(enabled=False)).task("validating", total=1) as bar:
            metrics = evaluate_model(
                model,
                data.users,
                data.items,
                users,
                items,
                labels,
                known,
                cfg.model.sequence.max_len,
                cfg.eval.ks,
                device,
                cfg.eval.batch_size,
                among_held_out=ranks_held_out_items(cfg),
            )
            bar.advance()
        return metrics

    return validate


def evaluate(
    run: LoadedRun | str | Path, split: str = "test", exclude_known: bool = True
) -> dict[str, float]:
    """Metrics of every task on ``split`` of a trained run (keys ``task/metric``);
    ``exclude_known`` as ``evaluation.evaluate.evaluate_model``'s."""
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', not {split!r}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    device = next(loaded.model.parameters()).device
    rows = loaded.interactions[loaded.interactions["split"] == split]
    if len(rows) == 0:
        why = ""
        if (selection := loaded.run.path / SELECTION).is_dir():
            why = f" (refit on train + valid, train.refit; {selection} holds the selected model)"
        elif loaded.run.update.is_file():  # hydrarec update (online/update.py)
            why = " (an updated run: it is validated on its newest interactions, split 'valid')"
        raise ConfigError(f"the run has no {split!r} interactions to evaluate{why}")
    labels = {
        n: rows[n].to_numpy(dtype=np.float32) for n in loaded.model.tasks if n in rows.columns
    }
    cfg = loaded.config
    return evaluate_model(
        loaded.model,
        loaded.users,
        loaded.items,
        rows["user_idx"].to_numpy(),
        rows["item_idx"].to_numpy(),
        labels,
        loaded.known(KNOWN_BEFORE[split]),
        cfg.model.sequence.max_len,
        cfg.eval.ks,
        device,
        cfg.eval.batch_size,
        exclude_known,
        among_held_out=ranks_held_out_items(cfg),
    )
