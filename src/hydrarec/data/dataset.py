"""`Dataset`: interactions + users + items + schema, with raw ids mapped to contiguous indices.

Raw ids are kept exactly as in the data (ints or strings). ``IdMap`` maps them both ways to the
contiguous indices ``0..n-1`` that the rest of hydrarec works with; the users and items tables are
stored in index order (row ``i`` describes index ``i``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Schema
from hydrarec.errors import DataError, UnknownIdError

# up to this many ids are looked up one by one: cheaper than a pandas Index built for the call
FEW = 16


class IdMap:
    """Raw id <-> contiguous index.

    >>> m = IdMap(["b", "a", "c"])
    >>> m.index(["c", "b"]).tolist(), m.raw([0, 2]).tolist(), len(m)
    ([2, 0], ['b', 'c'], 3)
    """

    def __init__(self, raw_ids: Sequence[Any] | np.ndarray, kind: str = "id") -> None:
        self.kind = kind
        self._raw = pd.Index(np.asarray(raw_ids))
        if self._raw.has_duplicates:
            dup = self._raw[self._raw.duplicated()][0]
            raise DataError(f"duplicate {kind} id {dup!r}", field=kind, expected="unique ids")

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def raw_ids(self) -> np.ndarray:
        return self._raw.to_numpy()

    def index(self, raw: Sequence[Any] | np.ndarray, *, missing: str = "raise") -> np.ndarray:
        """Indices of ``raw`` ids; unknown ids raise ``UnknownIdError`` or, with
        ``missing='minus_one'``, map to -1."""
        if len(raw) <= FEW:  # a request's few ids: hash lookups, no pandas Index built per call
            idx = np.fromiter((self._position(r) for r in raw), np.int64, len(raw))
        else:
            idx = self._raw.get_indexer(pd.Index(np.asarray(raw)))
        if missing == "raise" and (idx < 0).any():
            bad = [r for r, i in zip(np.asarray(raw).tolist(), idx.tolist(), strict=True) if i < 0]
            raise UnknownIdError(self.kind, bad)
        return idx.astype(np.int64)

    def _position(self, raw: Any) -> int:
        """The index of one raw id, -1 if unknown (or of a type no id has)."""
        try:
            loc = self._raw.get_loc(raw)
        except (KeyError, TypeError, pd.errors.InvalidIndexError):
            return -1
        return int(loc) if isinstance(loc, (int, np.integer)) else -1

    def raw(self, index: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._raw.to_numpy()[np.asarray(index, dtype=np.int64)]

    def __contains__(self, raw: object) -> bool:
        return raw in self._raw


@dataclass
class Dataset:
    """Interactions, users and items of one dataset.

    ``interactions`` has columns ``user_id``, ``item_id``, optionally ``timestamp``, the feedback
    labels declared in ``schema.interactions``, and the int64 columns ``user_idx`` / ``item_idx``.
    ``users`` / ``items`` have ``user_id`` / ``item_id`` plus side features, one row per index.
    ``given_splits`` holds splits that come with the data (e.g. MovieLens ``u1``): name ->
    {"train": row positions, "test": row positions} into ``interactions``.
    """

    name: str
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    schema: Schema
    user_ids: IdMap = field(init=False)
    item_ids: IdMap = field(init=False)
    given_splits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user_ids = IdMap(self.users[USER_ID].to_numpy(), "user")
        self.item_ids = IdMap(self.items[ITEM_ID].to_numpy(), "item")
        self.interactions = self.interactions.reset_index(drop=True)
        self.interactions["user_idx"] = self.user_ids.index(self.interactions[USER_ID].to_numpy())
        self.interactions["item_idx"] = self.item_ids.index(self.interactions[ITEM_ID].to_numpy())

    @classmethod
    def build(
        cls,
        name: str,
        interactions: pd.DataFrame,
        schema: Schema,
        users: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
        given_splits: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> Dataset:
        """Assemble a dataset; users / items seen only in interactions get a row of missing
        features, so every id in the interactions has an index."""
        if len(interactions) == 0:
            raise DataError(f"dataset {name!r} has no interactions", expected="at least one row")
        users = complete_ids(users, interactions[USER_ID], USER_ID)
        items = complete_ids(items, interactions[ITEM_ID], ITEM_ID)
        return cls(name, interactions, users, items, schema, given_splits=given_splits or {})

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def label_columns(self) -> list[str]:
        return [c.name for c in self.schema.labels()]

    def summary(self) -> dict[str, Any]:
        """Counts and time span, as printed by ``hydrarec datasets info``."""
        inter = self.interactions
        out: dict[str, Any] = {
            "name": self.name,
            "users": int(inter["user_idx"].nunique()),
            "items": int(inter["item_idx"].nunique()),
            "interactions": len(inter),
            "catalogue_users": self.n_users,
            "catalogue_items": self.n_items,
            "feedback": {c.name: c.kind.value for c in self.schema.labels()},
            "user_features": [c.name for c in self.schema.features("users")],
            "item_features": [c.name for c in self.schema.features("items")],
            "given_splits": sorted(self.given_splits),
        }
        if TIMESTAMP in inter.columns:
            ts = inter[TIMESTAMP]
            out["time_span"] = [
                pd.to_datetime(int(ts.min()), unit="s").isoformat(),
                pd.to_datetime(int(ts.max()), unit="s").isoformat(),
            ]
        return out


def complete_ids(
    table: pd.DataFrame | None, ids: pd.Series | np.ndarray, id_col: str
) -> pd.DataFrame:
    """``table`` (or a new one) with a row, of missing features, for each of ``ids`` it lacks."""
    if table is None:
        table = pd.DataFrame({id_col: pd.unique(ids)})
    missing = pd.Index(pd.unique(ids)).difference(pd.Index(table[id_col]))
    if len(missing):
        table = pd.concat([table, pd.DataFrame({id_col: missing.to_numpy()})], ignore_index=True)
    return table.reset_index(drop=True)
