"""The tabular dataset in streaming mode (``[data] streaming = true``, issue 7).

The train interactions stay on disk and are read row group by row group
(``hydrarec.data.streaming``); what is held in memory is O(distinct ids + held-out rows):

- **train**: one Parquet file, ``tabular.interactions`` with ``split.kind = "random"`` (minus the
  held-out rows), or ``tabular.train`` with ``split.kind = "given"``.
- **valid / test**: with ``interactions``, a hash carve: the (user, item) pairs whose hash falls
  in ``split.valid_ratio`` / ``split.test_ratio`` (the same rows in every pass and on every
  rank; a pair's repeated rows stay together). With explicit files, ``tabular.valid`` and
  ``tabular.test`` are read into memory (CSV or Parquet); without ``valid``, valid is carved from
  the train file by the same hash with ``split.valid_ratio``.
- **catalogue**: the users and items of the train rows (first pass), of the held-out rows and of
  the ``users`` / ``items`` tables.

Rows are taken as they are: ``data.duplicates`` is not applied, and the held-out rows carry no
timestamp (nothing in streaming mode reads time; see ``docs/distributed.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hydrarec.config import DataConfig
from hydrarec.data.dataset import Dataset, complete_ids
from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Column, Kind, Schema
from hydrarec.data.splits import Split
from hydrarec.data.streaming import Columns, HashCarve, ParquetInteractions
from hydrarec.data.tabular import (
    _feature_columns,
    _is_parquet,
    _plain_ints,
    _read_entities,
    _read_interactions,
    _resolve,
)
from hydrarec.errors import ConfigError, DataError


@dataclass
class StreamingSource:
    """The streamed train rows and everything held in memory beside them."""

    dataset: Dataset  # the catalogue (users, items) and the held-out interactions only
    split: Split  # train empty (it is streamed); valid / test rows of dataset.interactions
    stream: ParquetInteractions  # fitted on the train rows
    user_index: np.ndarray  # stream user vocabulary position -> dataset user index
    item_index: np.ndarray  # stream item vocabulary position -> dataset item index

    def item_counts(self) -> np.ndarray:
        """Train interactions of every catalogue item, (n_items,) float64."""
        counts = np.zeros(self.dataset.n_items, dtype=np.float64)
        counts[self.item_index] = self.stream.vocabularies_[self.stream.item_column].counts
        return counts


def load_streaming(
    cfg: DataConfig, observe: Callable[[Columns], None] | None = None
) -> StreamingSource:
    """Fit the stream (first pass; ``observe`` sees each row group's train labels) and load the
    held-out rows and the catalogue (see the module doc)."""
    tab = cfg.tabular
    base = Path(cfg.path) if cfg.path else Path.cwd()
    train_file, carve = _train_source(cfg)
    path = _resolve(base, train_file)
    if not _is_parquet(path):
        raise ConfigError(
            f"data.streaming reads Parquet row groups; {path} is not a .parquet file "
            "(convert it once, e.g. pandas.read_csv(...).to_parquet(..., row_group_size=...))"
        )
    if not path.is_file():
        raise DataError("file not found", file=path, expected="an existing Parquet file")
    labels = {k: Kind(v) for k, v in tab.labels.items()}
    stream = ParquetInteractions(
        [path], tab.user_id, tab.item_id, list(labels), cfg.buffer_rows, cfg.split.seed, carve
    ).fit(observe)
    heldout = _heldout(cfg, base, stream, labels)
    users_raw = stream.vocabularies_[tab.user_id].values
    items_raw = stream.vocabularies_[tab.item_id].values
    users = _read_entities(base, tab.users, tab.user_id, USER_ID, tab.user_features, tab)
    items = _read_entities(base, tab.items, tab.item_id, ITEM_ID, tab.item_features, tab)
    as_int = {
        c: all(_plain_ints(pd.Series(v)) for v in vs)
        for c, vs in (
            (USER_ID, [users_raw, heldout[USER_ID], *_ids(users, USER_ID)]),
            (ITEM_ID, [items_raw, heldout[ITEM_ID], *_ids(items, ITEM_ID)]),
        )
    }
    for c, table in ((USER_ID, heldout), (USER_ID, users), (ITEM_ID, heldout), (ITEM_ID, items)):
        if table is not None:
            table[c] = _ids_as(table[c].to_numpy(), as_int[c])
    users_raw, items_raw = _ids_as(users_raw, as_int[USER_ID]), _ids_as(items_raw, as_int[ITEM_ID])
    schema = Schema(
        interactions=[Column(n, k) for n, k in labels.items()],
        users=[Column(USER_ID, Kind.ID), *_feature_columns(tab.user_features)],
        items=[Column(ITEM_ID, Kind.ID), *_feature_columns(tab.item_features)],
    )
    part = heldout.pop("part").to_numpy()
    ds = Dataset.build(
        "tabular",
        heldout,
        schema,
        users=complete_ids(users, users_raw, USER_ID),
        items=complete_ids(items, items_raw, ITEM_ID),
    )
    split = Split(np.empty(0), np.flatnonzero(part == 1), np.flatnonzero(part == 2))
    return StreamingSource(
        ds, split, stream, ds.user_ids.index(users_raw), ds.item_ids.index(items_raw)
    )


def _train_source(cfg: DataConfig) -> tuple[str, HashCarve | None]:
    """The streamed file and the carve of held-out rows out of it."""
    tab, split = cfg.tabular, cfg.split
    if tab.interactions and (tab.train or tab.valid or tab.test):
        raise ConfigError("data.tabular: give either 'interactions' or 'train' / 'test' files")
    if tab.interactions:
        if split.kind != "random" or split.valid_ratio <= 0 or split.test_ratio <= 0:
            raise ConfigError(
                "data.streaming with tabular.interactions carves valid and test by a hash of "
                "(user, item): set data.split.kind = 'random' and valid_ratio, test_ratio > 0"
            )
        return tab.interactions, HashCarve(split.valid_ratio, split.test_ratio, split.seed)
    if not (tab.train and tab.test):
        raise ConfigError(
            "data.streaming needs tabular.interactions, or tabular.train and tabular.test"
        )
    if split.kind != "given":
        raise ConfigError(
            "data.streaming with tabular.train / test files: set data.split.kind = 'given'"
        )
    if tab.valid:
        return tab.train, None
    if split.valid_ratio <= 0:
        raise ConfigError("data.split.valid_ratio must be > 0 to carve valid out of tabular.train")
    return tab.train, HashCarve(split.valid_ratio, 0.0, split.seed)


def _heldout(
    cfg: DataConfig, base: Path, stream: ParquetInteractions, labels: dict[str, Kind]
) -> pd.DataFrame:
    """Valid and test rows: ``user_id``, ``item_id``, the labels and ``part`` (1 / 2)."""
    tab = cfg.tabular
    frames = []
    if stream.heldout_ is not None:
        carved = stream.heldout_.to_pandas()
        frames.append(carved.rename(columns={tab.user_id: USER_ID, tab.item_id: ITEM_ID}))
    for part, file in ((1, tab.valid), (2, tab.test)):
        if file and not tab.interactions:
            df, _ = _read_interactions(_resolve(base, file), tab, labels)
            frames.append(df.drop(columns=[TIMESTAMP], errors="ignore").assign(part=part))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(out) or not (out["part"] == 1).any():
        raise DataError(
            "streaming left no validation rows, needed to select the model",
            expected="a larger data.split.valid_ratio, or a tabular.valid file",
        )
    for name in labels:
        out[name] = out[name].astype(np.float32)
    out[USER_ID] = out[USER_ID].astype(object)  # raw ids: typed once every source is known
    out[ITEM_ID] = out[ITEM_ID].astype(object)
    return out[[USER_ID, ITEM_ID, *labels, "part"]]


def _ids(table: pd.DataFrame | None, column: str) -> list[np.ndarray]:
    return [] if table is None else [table[column].to_numpy()]


def _ids_as(ids: np.ndarray, as_int: bool) -> np.ndarray:
    """Raw ids as int64 when every id of that kind is a plain integer, else as strings."""
    return ids.astype(np.int64) if as_int else ids.astype(str).astype(object)
