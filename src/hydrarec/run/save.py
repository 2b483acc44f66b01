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
STORED_LIST_SEP = "|"  # how RUN/data/items.parquet stores list cells (multi-hot)


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
            **labels,
        }
    )
    inter = inter[inter["split"] != ""]
    write_with(run.data / "interactions.parquet", lambda p: inter.to_parquet(p, index=False))
    items = join_lists(ds.items.copy())
    write_with(run.data / "items.parquet", lambda p: items.to_parquet(p, index=False))
    write_json(
        run.data / "ids.json",
        {"users": ds.user_ids.raw_ids.tolist(), "items": ds.item_ids.raw_ids.tolist()},
    )


def join_lists(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its list cells as "a|b" strings, plain parquet columns (changed in place)."""
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, list)).any():
            df[col] = df[col].map(
                lambda v: STORED_LIST_SEP.join(map(str, v)) if isinstance(v, list) else v
            )
    return df


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
