"""The training data of ``hydrarec update`` (``updating.py``): RUN's interactions and the new
ones as one dataset and split, the run's feature pipeline with its id vocabularies extended, the
grown feature tables, and the replay epochs (``run/replay.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec.config import Config
from hydrarec.data.dataset import Dataset, IdMap
from hydrarec.data.labels import source_column, task_labels
from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Column, Kind, Schema
from hydrarec.data.splits import Split
from hydrarec.errors import Where
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.batching import BatchBuilder
from hydrarec.features.pipeline import EntityEncoder, FeaturePipeline
from hydrarec.run.catalogue import add_text, prepare_items, read_items
from hydrarec.run.data import train_batches
from hydrarec.run.replay import ReplayData, new_units
from hydrarec.run.rundir import LoadedRun, spec_from

VALID_SHARE = 0.1  # the newest share of the new interactions validates the update


def feedback_columns(cfg: Config) -> list[str]:
    """The interaction columns the run's tasks read (``rating`` for the MovieLens configs)."""
    columns = [source_column(t) for t in cfg.tasks]
    return list(dict.fromkeys(c for c in columns if c is not None))


@dataclass(frozen=True)
class NewItems:
    """The items of ``--items FILE``, checked and encoded as ``add-items`` does, text included."""

    raw: pd.DataFrame  # item_id typed like the run's, feature and text columns, lists split
    encoded: EntityFeatures


def read_new_items(
    path: str | Path, loaded: LoadedRun, cfg: Config, progress: bool | None = None
) -> NewItems:
    """Items new to the run from a CSV / Parquet file (``item_id``, the run's item feature and
    text columns): a ``DataError`` naming the file, line and column for a missing column, empty
    text, a repeated id or one the run has (``catalogue.prepare_items``)."""
    path = Path(path)
    where = Where(path, None if path.suffix in (".parquet", ".pq") else 2)
    pipeline = FeaturePipeline.load(loaded.run.features)
    raw = prepare_items(read_items(path), loaded.item_ids.raw_ids, pipeline, cfg, where)
    encoded = pipeline.transform_items(raw)
    if cfg.model.text.enabled:  # by the run's own language model and template, checked
        add_text(loaded.run, cfg, raw, encoded, loaded.items, where, progress)
    return NewItems(raw, encoded)


def replay_data(
    cfg: Config,
    loaded: LoadedRun,
    new: pd.DataFrame,
    source: Where,
    replay: float,
    items: NewItems | None = None,
) -> tuple[ReplayData, dict[str, Any]]:
    """Old and new interactions as one dataset and split, features extended, replay units."""
    if len(new) < 2:
        raise source.error(
            None, USER_ID, f"{len(new)} new interaction", "at least 2 (the newest validate)"
        )
    users = _extended(loaded.user_ids, new[USER_ID])
    catalogue = _catalogue(cfg, loaded, new, source, items)
    ds, split = _dataset(loaded, new, users, catalogue, items)
    labels = _labels(cfg, loaded.interactions, new)
    pipeline, user_table, item_table, grown = _features(loaded, ds, split, items)
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
        "source": str(source.source),
        "new_interactions": len(new),
        "valid_interactions": len(split.valid),
        "new_users": len(users) - len(loaded.user_ids),
        "new_items": len(catalogue) - len(loaded.item_ids),
        "epochs": cfg.train.epochs,
        "replay": replay,
        "new_per_epoch": int(fresh.sum()),
        "replay_per_epoch": count,
        **grown,
    }
    return data, facts


def _catalogue(
    cfg: Config, loaded: LoadedRun, new: pd.DataFrame, source: Where, items: NewItems | None
) -> IdMap:
    """The item catalogue grown by the items of ``--items``, then by the other new items of the
    interactions: those have no text, which a run that reads item text cannot do without."""
    listed = items.raw[ITEM_ID] if items is not None else pd.Series([], dtype=object)
    catalogue = _extended(loaded.item_ids, pd.concat([listed, new[ITEM_ID]], ignore_index=True))
    unlisted = catalogue.raw_ids[len(loaded.item_ids) + len(listed) :]
    if cfg.model.text.enabled and len(unlisted):
        row = int(np.flatnonzero(new[ITEM_ID].isin(unlisted))[0])
        why = (
            f"item {unlisted.tolist()[0]!r} is new to the run, which describes items by their "
            "text: give new items' text and features with --items FILE (as for add-items)"
        )
        raise source.error(row, ITEM_ID, why, "items of the run's catalogue or of --items")
    return catalogue


def _dataset(
    loaded: LoadedRun, new: pd.DataFrame, users: IdMap, items: IdMap, listed: NewItems | None
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
    n_listed = 0 if listed is None else len(listed.raw)
    parts = [loaded.items_raw]
    if listed is not None:  # in the run's raw columns; list cells are joined when saved
        parts.append(listed.raw.reindex(columns=loaded.items_raw.columns))
    parts.append(pd.DataFrame({ITEM_ID: items.raw_ids[len(loaded.item_ids) + n_listed :]}))
    ds = Dataset(
        str(loaded.meta.get("dataset", "update")),
        interactions,
        pd.DataFrame({USER_ID: users.raw_ids}),
        pd.concat(parts, ignore_index=True),
        Schema([Column(USER_ID, Kind.ID), Column(ITEM_ID, Kind.ID)]),
    )
    newest = _newest(new_order, max(1, round(VALID_SHARE * len(new))))
    train = np.concatenate([np.arange(n_old), n_old + np.flatnonzero(~newest)])
    return ds, Split(train, n_old + np.flatnonzero(newest), np.empty(0, np.int64))


def _features(
    loaded: LoadedRun, ds: Dataset, split: Split, listed: NewItems | None
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
    known = (
        loaded.items if listed is None else EntityFeatures.concat([loaded.items, listed.encoded])
    )
    items = _grown_table(pipeline.item_, known, ds.item_ids)
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
    item_idx = ds.interactions["item_idx"].to_numpy()
    train_new = split.train[is_new[split.train]]
    train_old = split.train[~is_new[split.train]]
    weight = min(1.0, replay * len(train_new) / max(1, len(train_old)))
    counts = np.bincount(item_idx[train_new], minlength=ds.n_items).astype(np.float64)
    counts += weight * np.bincount(item_idx[train_old], minlength=ds.n_items)
    return train_batches(cfg, ds, split.train, labels, users, items, counts)
