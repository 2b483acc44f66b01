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

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomllib
import torch

from hydrarec.config import Config, config_from_dict
from hydrarec.data.dataset import IdMap
from hydrarec.errors import ConfigError, DataError, RunError
from hydrarec.features.batch import EntityFeatures, EntitySpec
from hydrarec.features.batching import UserHistories
from hydrarec.features.text_model import DEFAULT_MODEL, check_model_dir
from hydrarec.io.atomic import write_tensors
from hydrarec.io.read import read_json_file, read_parquet_file, read_tensor_file
from hydrarec.model.ensemble import Model
from hydrarec.run.build import build_model


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
    update = property(lambda self: self.path / "update.json")  # hydrarec update: its source

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


def load_table(path: Path, spec: EntitySpec | None = None) -> EntityFeatures:
    """An encoded table; with ``spec`` (model.json's), checked to fit it (`RunError` otherwise)."""
    t = read_tensor_file(path)
    if "ids" not in t:
        raise RunError(f"{path}: no tensor 'ids' (not an encoded feature table)")
    table = EntityFeatures(
        ids=t["ids"],
        categorical={k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("categorical.")},
        numeric=t.get("numeric"),
        multi_hot={k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("multi_hot.")},
        text=t.get("text"),
        text_states=t.get("text_states"),
        text_mask=t.get("text_mask"),
    )
    if spec is not None:
        check_table(table, spec, path)
    return table


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
        user, item, order = (df[c].to_numpy() for c in ("user_idx", "item_idx", "order"))
        return UserHistories(user, item, order, n_users=len(self.user_ids))


def load_run(path: str | Path, device: torch.device | None = None) -> LoadedRun:
    """Load a run read-only: config, weights (safetensors), tables. Executes nothing from it.

    A damaged or edited file is a `RunError` naming it, non-finite weights included."""
    run = RunDir(path).require()
    config = load_config(run.config)
    meta = read_json_file(run.meta, ("user_spec", "item_spec", "label_stats", "n_items"))
    user_spec = spec_from(meta, "user_spec", run.meta)
    item_spec = spec_from(meta, "item_spec", run.meta)
    model = _load_model(run, config, meta, user_spec, item_spec)
    if device is not None:
        model.to(device)
    ids = read_json_file(run.data / "ids.json", ("users", "items"))
    user_ids, item_ids = _id_map(ids, "users", run), _id_map(ids, "items", run)
    if int(meta["n_items"]) != len(item_ids):  # catalogue.add_items keeps the two together
        raise RunError(f"{run.meta}: n_items is {meta['n_items']}, data/ids.json has "
                       f"{len(item_ids)} items")  # fmt: skip
    users = load_table(run.features / "users.safetensors", user_spec)
    if len(users) != len(user_ids):
        raise RunError(f"{run.features / 'users.safetensors'}: {len(users)} rows, data/ids.json "
                       f"has {len(user_ids)} users")  # fmt: skip
    interactions = read_parquet_file(
        run.data / "interactions.parquet", ("user_idx", "item_idx", "order", "split")
    )
    _check_indices(interactions, len(user_ids), len(item_ids), run.data / "interactions.parquet")
    return LoadedRun(
        run=run,
        config=config,
        meta=meta,
        model=model,
        users=users,
        items=load_table(run.features / "items.safetensors", item_spec),
        user_ids=user_ids,
        item_ids=item_ids,
        items_raw=read_parquet_file(run.data / "items.parquet"),
        interactions=interactions,
    )


def load_config(path: Path) -> Config:
    """A run's config.toml; unreadable or invalid is a `RunError` naming it."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
        config = config_from_dict(raw, str(path))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ConfigError) as e:
        raise RunError(f"{path}: not a valid hydrarec config ({e})") from None
    text = config.model.text
    if text.enabled and text.model != DEFAULT_MODEL and Path(text.model).expanduser().is_dir():
        try:  # a text model directory is read only as safetensors and never runs its own code
            check_model_dir(Path(text.model).expanduser())
        except ConfigError as e:
            raise RunError(f"{path}: {e}") from None
    return config


def _load_model(
    run: RunDir, config: Config, meta: dict[str, Any], user_spec: EntitySpec, item_spec: EntitySpec
) -> Model:
    """The model config.toml and model.json describe, with the weights of model.safetensors."""
    try:
        stats = {
            str(k): (float(a), float(b), float(c)) for k, (a, b, c) in meta["label_stats"].items()
        }
        n_items = int(meta["n_items"])
    except (TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{run.meta}: bad label_stats or n_items ({e})") from None
    try:
        model = build_model(config, user_spec, item_spec, stats, n_items)
    except (ConfigError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise RunError(f"{run.config} and {run.meta} do not describe a model ({e})") from None
    state = read_tensor_file(run.model)
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and v.dtype != own[k].dtype]
    if wrong:
        raise RunError(f"{run.model}: tensor {wrong[0]!r} is {state[wrong[0]].dtype}, the model's "
                       f"is {own[wrong[0]].dtype}")  # fmt: skip
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise RunError(
            f"{run.model}: does not fit the model that config.toml and model.json describe "
            f"({' '.join(line.strip() for line in first[:3])[:600]})"
        ) from None
    return model.eval()


def _id_map(ids: dict[str, Any], key: str, run: RunDir) -> IdMap:
    where = run.data / "ids.json"
    values = ids[key]
    if not isinstance(values, list) or not all(isinstance(v, (int, str)) for v in values):
        raise RunError(f"{where}: {key!r} is not a list of ids (integers or strings)")
    try:
        return IdMap(np.asarray(values), key[:-1])
    except DataError as e:
        raise RunError(f"{where}: {e}") from None


def _check_indices(df: pd.DataFrame, n_users: int, n_items: int, path: Path) -> None:
    for column, n in (("user_idx", n_users), ("item_idx", n_items)):
        values = df[column].to_numpy()
        if not np.issubdtype(values.dtype, np.integer) or (
            len(values) and not (values.min() >= 0 and values.max() < n)
        ):
            raise RunError(f"{path}: column {column!r} is not indices in [0, {n}) ({values.dtype})")


def spec_from(meta: Mapping[str, Any], key: str, path: str | Path) -> EntitySpec:
    """``meta[key]`` (model.json's ``user_spec`` / ``item_spec``) as an `EntitySpec`."""
    try:
        spec = EntitySpec.from_dict(meta[key])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{path}: {key!r} is not a feature spec ({type(e).__name__}: {e})") from None
    sizes = [spec.n_ids, spec.n_numeric, spec.text_dim, *spec.categorical.values()]
    if min([*sizes, *spec.multi_hot.values()]) < 0 or spec.n_ids < 2:
        raise RunError(f"{path}: {key!r} has a negative or too small size: {meta[key]}")
    return spec


def check_table(table: EntityFeatures, spec: EntitySpec, path: str | Path) -> None:
    """An encoded table (features/users or items.safetensors) fits ``spec`` (model.json): the
    same features, every index inside its vocabulary, every row the same length."""
    n = len(table)
    found = {**{f"categorical.{k}": v for k, v in table.categorical.items()},
             **{f"multi_hot.{k}": v for k, v in table.multi_hot.items()}}  # fmt: skip
    wanted = {**{f"categorical.{k}": s for k, s in spec.categorical.items()},
              **{f"multi_hot.{k}": s for k, s in spec.multi_hot.items()}}  # fmt: skip
    if set(found) != set(wanted):
        raise RunError(
            f"{path}: features {sorted(found)} do not match model.json's {sorted(wanted)} "
            "(a table of the other entity, or of another run?)"
        )
    for name, t in {"ids": table.ids, **found}.items():
        size = spec.n_ids if name == "ids" else wanted[name]
        if t.dtype != torch.int64 or t.shape[0] != n or (t.numel() and not 0 <= t.min() < size):
            raise RunError(
                f"{path}: tensor {name!r} ({t.dtype}, shape {tuple(t.shape)}) is not {n} rows "
                f"of int64 indices below {size}"
            )
    width = 0 if table.numeric is None else table.numeric.shape[-1]
    if width != spec.n_numeric or (table.numeric is not None and table.numeric.shape[0] != n):
        raise RunError(
            f"{path}: numeric features of width {width}, model.json says {spec.n_numeric}"
        )
    text = 0 if table.text is None else table.text.shape[-1]
    if table.text_states is None and text != spec.text_dim:
        raise RunError(f"{path}: text vectors of width {text}, model.json says {spec.text_dim}")
