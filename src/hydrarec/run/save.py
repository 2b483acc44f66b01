"""What a run writes beside its weights: ``RUN/data/`` (interactions with their split
and labels, items, raw ids) and ``model.json``."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec import __version__
from hydrarec.config import Config
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import TIMESTAMP
from hydrarec.data.splits import Split
from hydrarec.io.atomic import write_json, write_with
from hydrarec.model.ensemble import Model
from hydrarec.run.data import TrainData
from hydrarec.run.rundir import RunDir

SPLIT_NAMES = ("train", "valid", "test")


def _order(df: pd.DataFrame) -> np.ndarray:
    """Time order within a user: the timestamp, else the position in the file."""
    if TIMESTAMP in df.columns:
        return df[TIMESTAMP].to_numpy(dtype=np.int64)
    return np.arange(len(df), dtype=np.int64)


def _split_column(n: int, split: Split) -> np.ndarray:
    col = np.full(n, "", dtype=object)
    for name in SPLIT_NAMES:
        col[getattr(split, name)] = name
    return col


def save_data(run: RunDir, ds: Dataset, split: Split, labels: dict[str, np.ndarray]) -> None:
    inter = pd.DataFrame(
        {
            "user_idx": ds.interactions["user_idx"].to_numpy(),
            "item_idx": ds.interactions["item_idx"].to_numpy(),
            "order": _order(ds.interactions),
            "split": _split_column(len(ds.interactions), split),
        }
    )
    for name, v in labels.items():
        inter[name] = v
    inter = inter[inter["split"] != ""]
    write_with(run.data / "interactions.parquet", lambda p: inter.to_parquet(p, index=False))
    items = ds.items.copy()
    for col in items.columns:  # lists (multi-hot) as "a|b" strings: plain parquet columns
        if items[col].map(lambda v: isinstance(v, list)).any():
            items[col] = items[col].map(
                lambda v: "|".join(map(str, v)) if isinstance(v, list) else v
            )
    write_with(run.data / "items.parquet", lambda p: items.to_parquet(p, index=False))
    write_json(
        run.data / "ids.json",
        {"users": ds.user_ids.raw_ids.tolist(), "items": ds.item_ids.raw_ids.tolist()},
    )


def run_meta(cfg: Config, data: TrainData, model: Model) -> dict[str, Any]:
    return {
        "hydrarec_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": data.dataset.name,
        "n_users": data.dataset.n_users,
        "n_items": data.dataset.n_items,
        "user_spec": data.user_spec.to_dict(),
        "item_spec": data.item_spec.to_dict(),
        "label_stats": data.stats,
        "tasks": {t.name: t.kind for t in cfg.tasks},
        "parameters": sum(p.numel() for p in model.parameters()),
        "split_sizes": {k: len(getattr(data.split, k)) for k in SPLIT_NAMES}
        | {"train": data.train_rows},
    }
