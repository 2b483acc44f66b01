"""The training data of ``hydrarec update`` (``updating.py``): RUN's interactions and the new
ones as one dataset and split, the run's feature pipeline with its id vocabularies extended, the
grown feature tables, and the replay epochs (``training/replay.py``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec.config import Config
from hydrarec.data.dataset import Dataset, IdMap
from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Column, Kind, Schema
from hydrarec.data.splits import Split
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.batching import BatchBuilder, UserHistories
from hydrarec.features.pipeline import EntityEncoder, FeaturePipeline
from hydrarec.labels import source_column, task_labels
from hydrarec.online.new_interactions import Source
from hydrarec.rundir import LoadedRun
from hydrarec.runfiles import spec_from
from hydrarec.training.data import retrieval_sampling
from hydrarec.training.replay import ReplayData, new_units

VALID_SHARE = 0.1  # the newest share of the new interactions validates the update


def feedback_columns(cfg: Config) -> list[str]:
    """The interaction columns the run's tasks read (``rating`` for the MovieLens configs)."""
    columns = [source_column(t) for t in cfg.tasks]
    return list(dict.fromkeys(c for c in columns if c is not None))


def replay_data(
    cfg: Config, loaded: LoadedRun, new: pd.DataFrame, source: Source, replay: float
) -> tuple[ReplayData, dict[str, Any]]:
    """Old and new interactions as one dataset and split, features extended, replay units."""
    if len(new) < 2:
        raise source.error(
            None, USER_ID, f"{len(new)} new interaction", "at least 2 (the newest validate)"
        )
    users = _extended(loaded.user_ids, new[USER_ID])
    items = _extended(loaded.item_ids, new[ITEM_ID])
    added_items = items.raw_ids[len(loaded.item_ids) :]
    if cfg.model.text.enabled and len(added_items):
        row = int(np.flatnonzero(new[ITEM_ID].isin(added_items))[0])
        why = (
            f"item {added_items[0]!r} is not in the run's catalogue, and the run describes items "
            "by their text: add new items to a copy of the run (`hydrarec add-items COPY "
            "items.csv`) and update the copy"
        )
        raise source.error(row, ITEM_ID, why, "items of the run's catalogue")
    ds, split = _dataset(loaded, new, users, items)
    labels = _labels(cfg, loaded.interactions, new)
    pipeline, user_table, item_table, grown = _features(loaded, ds, split)
    path = loaded.run.meta
    user_spec = replace(spec_from(loaded.meta, "user_spec", path), n_ids=pipeline.user_.ids.size)
    item_spec = replace(spec_from(loaded.meta, "item_spec", path), n_ids=pipeline.item_.ids.size)
    stats = {
        k: (float(a), float(b), float(c)) for k, (a, b, c) in loaded.meta["label_stats"].items()
    }
    is_new = np.arange(len(ds.interactions)) >= len(loaded.interactions)
    builder = _builder(cfg, ds, split, labels, user_table, item_table, is_new, replay)
    units = builder.units(split.train)
    fresh = new_units(builder, units, is_new)
    count = min(int((~fresh).sum()), round(replay * int(fresh.sum())))
    data = ReplayData(
        cfg,
        ds,
        split,
        labels,
        stats,
        pipeline,
        user_table,
        item_table,
        user_spec,
        item_spec,
        builder,
        fresh=units[fresh],
        old=units[~fresh],
        replay=count,
    )
    facts: dict[str, Any] = {
        "source": source.name,
        "new_interactions": len(new),
        "valid_interactions": len(split.valid),
        "new_users": len(users) - len(loaded.user_ids),
        "new_items": len(added_items),
        "epochs": cfg.train.epochs,
        "replay": replay,
        "new_per_epoch": int(fresh.sum()),
        "replay_per_epoch": count,
        **grown,
    }
    return data, facts


def _dataset(
    loaded: LoadedRun, new: pd.DataFrame, users: IdMap, items: IdMap
) -> tuple[Dataset, Split]:
    """RUN's interactions then the new ones, as one dataset: every old one and the new ones but
    the newest ``VALID_SHARE`` train, those validate. The time of an old one is its ``order``;
    of a new one its timestamp, else after every old one in file order."""
    old, n_old = loaded.interactions, len(loaded.interactions)
    if TIMESTAMP in new.columns:
        new_order = new[TIMESTAMP].to_numpy(np.int64)
    else:
        new_order = int(old["order"].max(initial=-1)) + 1 + np.arange(len(new), dtype=np.int64)
    interactions = pd.DataFrame(
        {
            USER_ID: np.concatenate(
                [loaded.user_ids.raw(old["user_idx"].to_numpy()), new[USER_ID]]
            ),
            ITEM_ID: np.concatenate(
                [loaded.item_ids.raw(old["item_idx"].to_numpy()), new[ITEM_ID]]
            ),
            TIMESTAMP: np.concatenate([old["order"].to_numpy(np.int64), new_order]),
        }
    )
    added_items = pd.DataFrame({ITEM_ID: items.raw_ids[len(loaded.item_ids) :]})
    ds = Dataset(
        str(loaded.meta.get("dataset", "update")),
        interactions,
        pd.DataFrame({USER_ID: users.raw_ids}),
        pd.concat([loaded.items_raw, added_items], ignore_index=True),
        Schema([Column(USER_ID, Kind.ID), Column(ITEM_ID, Kind.ID)]),
    )
    newest = _newest(new_order, max(1, round(VALID_SHARE * len(new))))
    train = np.concatenate([np.arange(n_old), n_old + np.flatnonzero(~newest)])
    return ds, Split(train, n_old + np.flatnonzero(newest), np.empty(0, np.int64))


def _features(
    loaded: LoadedRun, ds: Dataset, split: Split
) -> tuple[FeaturePipeline, EntityFeatures, EntityFeatures, dict[str, int]]:
    """RUN's feature pipeline with every user and item of the train rows in its id
    vocabularies (appended), and the encoded tables of the grown catalogues."""
    pipeline = FeaturePipeline.load(loaded.run.features)
    train = ds.interactions.iloc[split.train]
    facts = {
        "new_user_ids": len(pipeline.user_.ids.extend(train[USER_ID].to_numpy())),
        "new_item_ids": len(pipeline.item_.ids.extend(train[ITEM_ID].to_numpy())),
    }
    users = _grown_table(pipeline.user_, loaded.users, ds.user_ids)
    items = _grown_table(pipeline.item_, loaded.items, ds.item_ids)
    return pipeline, users, items, facts


def _extended(ids: IdMap, raw: pd.Series) -> IdMap:
    """``ids`` with the ids of ``raw`` it lacks appended, in order of first appearance."""
    seen = pd.unique(raw.to_numpy())
    added = seen[ids.index(seen, missing="minus_one") < 0]
    if not len(added):
        return ids
    old = ids.raw_ids  # text ids as objects: a fixed-width numpy string would cut longer ones
    kind = np.int64 if old.dtype.kind in "iu" else object
    return IdMap(np.concatenate([old.astype(kind), added.astype(kind)]), ids.kind)


def _newest(order: np.ndarray, n: int) -> np.ndarray:
    """(N,) bool: the ``n`` latest of ``order`` (ties: the later row)."""
    latest = np.lexsort((np.arange(len(order)), order))[-n:]
    mask = np.zeros(len(order), dtype=bool)
    mask[latest] = True
    return mask


def _labels(cfg: Config, old: pd.DataFrame, new: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every pointwise task's labels: RUN's stored ones, then those of the new rows (NaN where
    a feedback column or value is missing, as for an event without a rating)."""
    columns = {c: new[c] if c in new.columns else np.nan for c in feedback_columns(cfg)}
    fresh = task_labels(pd.DataFrame(columns, index=new.index), cfg.tasks)
    return {k: np.concatenate([old[k].to_numpy(np.float32), v]) for k, v in fresh.items()}


def _grown_table(encoder: EntityEncoder, table: EntityFeatures, ids: IdMap) -> EntityFeatures:
    """``table`` with a row per id it lacks (side features missing: the new rows bring none)
    and every row's id index encoded again by the extended vocabulary."""
    added = ids.raw_ids[len(table) :]
    if len(added):
        blank = pd.DataFrame(
            {encoder.id_column: added} | {f.name: [None] * len(added) for f in encoder.features}
        )
        table = EntityFeatures.concat([table, encoder.transform(blank)])
    return replace(table, ids=torch.from_numpy(encoder.ids.transform(ids.raw_ids)))


def _builder(
    cfg: Config,
    ds: Dataset,
    split: Split,
    labels: dict[str, np.ndarray],
    users: EntityFeatures,
    items: EntityFeatures,
    is_new: np.ndarray,
    replay: float,
) -> BatchBuilder:
    """``make_train_data``'s batch builder over every train row (the histories), with item
    counts for logQ weighted as an epoch draws them: new rows once, old ones ``replay`` times
    their share of the old rows (about)."""
    inter = ds.interactions
    user_idx, item_idx = inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy()
    ts = inter[TIMESTAMP].to_numpy(np.int64)
    histories = UserHistories(user_idx, item_idx, ts, rows=split.train, n_users=ds.n_users)
    train_new = split.train[is_new[split.train]]
    train_old = split.train[~is_new[split.train]]
    weight = min(1.0, replay * len(train_new) / max(1, len(train_old)))
    counts = np.bincount(item_idx[train_new], minlength=ds.n_items).astype(np.float64)
    counts += weight * np.bincount(item_idx[train_old], minlength=ds.n_items)
    return BatchBuilder(
        user_idx,
        item_idx,
        labels,
        users,
        items,
        histories=histories,
        history_len=cfg.model.sequence.max_len if cfg.model.sequence.kind != "none" else 1,
        **retrieval_sampling(cfg, ds.n_items, counts),
        examples=cfg.train.examples,
        window_stride=cfg.train.window_stride or 0,
        length_buckets=cfg.train.length_buckets,
        pack_windows=cfg.train.pack_windows,
    )
