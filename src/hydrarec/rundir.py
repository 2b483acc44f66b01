"""The run directory: everything needed to reproduce, evaluate and serve a trained model.

    RUN/config.toml             resolved config
    RUN/model.safetensors       best weights (chosen on validation)
    RUN/model.json              sizes to rebuild the model, label statistics, versions, date
    RUN/features/               fitted feature encoders (JSON) and encoded user/item tables
    RUN/data/                   id maps, raw item/user tables, known interactions with their split
    RUN/metrics.json            {"valid": {...}, "test": {...}}
    RUN/history.jsonl           per-epoch losses, loss weights, validation metrics
    RUN/checkpoints/last.*      the last full training state (resume)
    RUN/log.txt                 everything printed

Every file is written atomically and holds plain data; loading a run executes no code from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomllib
import torch

from hydrarec.build import build_model
from hydrarec.config import Config, config_from_dict
from hydrarec.data.dataset import IdMap
from hydrarec.ensemble import Model
from hydrarec.errors import RunError
from hydrarec.features.batch import EntityFeatures, EntitySpec
from hydrarec.features.batching import UserHistories
from hydrarec.io import read_json, read_tensors, write_tensors


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.toml")
    model = property(lambda self: self.path / "model.safetensors")
    meta = property(lambda self: self.path / "model.json")
    features = property(lambda self: self.path / "features")
    data = property(lambda self: self.path / "data")
    metrics = property(lambda self: self.path / "metrics.json")
    history = property(lambda self: self.path / "history.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    log = property(lambda self: self.path / "log.txt")

    def require(self) -> RunDir:
        """Raise ``RunError`` unless this is a complete run."""
        if not self.path.is_dir():
            raise RunError(f"run directory not found: {self.path}")
        missing = [p.name for p in (self.config, self.meta, self.model) if not p.is_file()]
        if missing:
            raise RunError(
                f"{self.path} is not a hydrarec run (missing {', '.join(missing)}); "
                "create one with `hydrarec train --config C.toml --out RUN`"
            )
        return self


def save_table(path: Path, table: EntityFeatures) -> None:
    tensors = {"ids": table.ids}
    tensors |= {f"categorical.{k}": v for k, v in table.categorical.items()}
    tensors |= {f"multi_hot.{k}": v for k, v in table.multi_hot.items()}
    if table.numeric is not None:
        tensors["numeric"] = table.numeric
    if table.text is not None:
        tensors["text"] = table.text
    if table.text_states is not None and table.text_mask is not None:  # fine-tuned text layers
        tensors |= {"text_states": table.text_states, "text_mask": table.text_mask}
    write_tensors(path, tensors)


def load_table(path: Path) -> EntityFeatures:
    t = read_tensors(path)
    return EntityFeatures(
        ids=t["ids"],
        categorical={k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("categorical.")},
        numeric=t.get("numeric"),
        multi_hot={k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("multi_hot.")},
        text=t.get("text"),
        text_states=t.get("text_states"),
        text_mask=t.get("text_mask"),
    )


@dataclass
class LoadedRun:
    run: RunDir
    config: Config
    meta: dict[str, Any]
    model: Model
    users: EntityFeatures  # encoded user table, catalogue order
    items: EntityFeatures  # encoded item table, catalogue order
    user_ids: IdMap
    item_ids: IdMap
    items_raw: pd.DataFrame  # raw item table (titles etc.), catalogue order
    interactions: pd.DataFrame  # user_idx, item_idx, order, split, task labels

    def __post_init__(self) -> None:
        # the item tables grow together (catalogue.add_items); a mismatch means a broken run
        sizes = {"features/items.safetensors": len(self.items), "data/ids.json": len(self.item_ids),
                 "data/items.parquet": len(self.items_raw)}  # fmt: skip
        if len(set(sizes.values())) > 1:
            raise RunError(f"{self.run.path}: inconsistent item tables, rows: {sizes}")

    def known(self, splits: tuple[str, ...]) -> UserHistories:
        """Each user's items in the given splits, oldest first."""
        df = self.interactions[self.interactions["split"].isin(splits)]
        return UserHistories(
            df["user_idx"].to_numpy(),
            df["item_idx"].to_numpy(),
            df["order"].to_numpy(),
            n_users=len(self.user_ids),
        )


def load_run(path: str | Path, device: torch.device | None = None) -> LoadedRun:
    """Load a run read-only: config, weights (safetensors), tables. Executes nothing from it."""
    run = RunDir(path).require()
    config = config_from_dict(tomllib.loads(run.config.read_text("utf-8")), str(run.config))
    meta = read_json(run.meta)
    model = build_model(
        config,
        EntitySpec.from_dict(meta["user_spec"]),
        EntitySpec.from_dict(meta["item_spec"]),
        {k: (float(a), float(b), float(c)) for k, (a, b, c) in meta["label_stats"].items()},
        int(meta["n_items"]),
    )
    state = read_tensors(run.model)
    model.load_state_dict(state)
    model.eval()
    if device is not None:
        model.to(device)
    ids = read_json(run.data / "ids.json")
    return LoadedRun(
        run=run,
        config=config,
        meta=meta,
        model=model,
        users=load_table(run.features / "users.safetensors"),
        items=load_table(run.features / "items.safetensors"),
        user_ids=IdMap(np.asarray(ids["users"]), "user"),
        item_ids=IdMap(np.asarray(ids["items"]), "item"),
        items_raw=pd.read_parquet(run.data / "items.parquet"),
        interactions=pd.read_parquet(run.data / "interactions.parquet"),
    )
