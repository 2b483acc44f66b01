"""The query side of retrieval: users -> vectors, for known users and for users described by a
history of raw item ids and / or raw user features.

A known user is their stored features and their full history (every split), as in evaluation. A
given history extends a known user's stored one (most recent last); a user the run does not know
gets the out-of-vocabulary id and is described by history and features alone, encoded by the run's
fitted feature pipeline (``RUN/features/features.json``): the path the user tower learned for
users it never saw (``encoders/towers.py``). Vectorised: one tower call for the whole batch.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hydrarec.data.dataset import IdMap
from hydrarec.errors import DataError, UnknownIdError
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.histories import UserHistories, ragged_arange
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.run.rundir import LoadedRun


@dataclass
class UserQuery:
    """Whom to recommend for: a known ``user_id``, and / or a ``history`` of raw item ids (most
    recent last), and / or raw user ``features`` (column -> value, as in the users table)."""

    user_id: Any = None
    history: Sequence[Any] | None = None
    features: Mapping[str, Any] | None = None


@dataclass
class Users:
    """Resolved users: their vectors and full histories (what is excluded as seen)."""

    vectors: Tensor  # (B, D)
    history: np.ndarray  # (B, L) catalogue indices, right-aligned, 0 where padded
    mask: np.ndarray  # (B, L) True where ``history`` holds an item


# the one spelling of an integer as text: no sign but "-", no leading zero, blank or "_"
DECIMAL = re.compile(r"0|-?[1-9][0-9]*")


def match_id_type(raw: Any, known: np.ndarray) -> Any:
    """An id from JSON, a CSV, a URL or Python as the run's id type, by one rule for the Python
    API, the CLI and the HTTP service (issue 21). Ids stay exact: a string names an integer id
    only as that integer's decimal spelling ("42", "-7"; not "042", " 42", "+42" or "4_2"), and
    an integer names a text id by the same spelling (42 -> "42"), so every id has one spelling
    of each type and nothing else finds it. Anything else is returned as it is (and not found).

    >>> match_id_type("42", np.array([1, 42])), match_id_type(7, np.array(["7"], dtype=object))
    (42, '7')
    >>> match_id_type("042", np.array([1, 42]))
    '042'
    """
    if known.dtype.kind in "iu" and isinstance(raw, str):
        return int(raw) if DECIMAL.fullmatch(raw) else raw
    if known.dtype.kind in "OUS" and isinstance(raw, (int, np.integer)) and not _is_bool(raw):
        return str(raw)
    return raw


def id_keys(raw: Sequence[Any] | np.ndarray, ids: IdMap) -> Sequence[Any] | np.ndarray:
    """``raw`` ids as keys of ``ids`` (``match_id_type``); an array already of the run's id type
    as it is. A value that is no id (a float, a bool, None) is an ``UnknownIdError`` naming it:
    ``IdMap`` would find 42.0 as 42."""
    known = ids.raw_ids
    if isinstance(raw, np.ndarray) and (
        (known.dtype.kind in "iu" and raw.dtype.kind in "iu")
        or (known.dtype.kind in "OUS" and raw.dtype.kind in "US")
    ):
        return raw
    keys = [match_id_type(r, known) for r in raw]
    bad = [r for r in keys if _is_bool(r) or not isinstance(r, (int, np.integer, str))]
    if bad:
        raise UnknownIdError(ids.kind, bad)
    return keys


def _is_bool(raw: Any) -> bool:
    return isinstance(raw, (bool, np.bool_))


class QueryEncoder:
    """User vectors of a loaded run (``item_vectors`` (I, D): the item tower's, catalogue order)."""

    def __init__(
        self,
        run: LoadedRun,
        known: UserHistories,
        item_vectors: Tensor,
        device: torch.device,
        cache_size: int = 100_000,
    ) -> None:
        self.run = run
        self.known = known
        self.item_vectors = item_vectors
        self.device = device
        self.max_len = int(run.config.model.sequence.max_len)
        self._pipeline: FeaturePipeline | None = None
        # a known user's vector depends only on what the run stores: computed once, kept (LRU)
        self._known: OrderedDict[int, Tensor] = OrderedDict()
        self.cache_size = cache_size

    def known_users(self, user_index: np.ndarray) -> Users:
        """Known users (catalogue indices) from their stored features and history."""
        none = [np.empty(0, np.int64)] * len(user_index)
        hist, mask = padded_histories(self.known, user_index, none, self.max_len)
        return Users(self._known_vectors(user_index, hist, mask), hist, mask)

    def warm(self, batch_size: int = 1024) -> int:
        """Encode known users before anyone asks for them, the most active first, as many as
        the cache holds; how many. A service calls it at start-up: otherwise each user's first
        request pays a tower call of its own."""
        active = np.diff(self.known.indptr)  # (U,) interactions per user
        order = np.argsort(-active, kind="stable")[: self.cache_size]
        for s in range(0, len(order), batch_size):
            self.known_users(order[s : s + batch_size])
        return len(order)

    def _known_vectors(self, uid: np.ndarray, hist: np.ndarray, mask: np.ndarray) -> Tensor:
        """Vectors of known users (``hist`` / ``mask``: their stored histories), from the cache
        where it has them; the others are encoded in one call and cached."""
        keys = [int(u) for u in uid]
        miss = [j for j, u in enumerate(keys) if u not in self._known]
        if miss:
            rows = np.asarray(miss)
            feats = self.run.users.gather(torch.from_numpy(uid[rows]))
            fresh = self._encode(feats, hist[rows], mask[rows])
            for j, vec in zip(miss, fresh, strict=True):
                self._known[keys[j]] = vec
        if not keys:
            return torch.empty(0, self.item_vectors.shape[1], device=self.item_vectors.device)
        out = torch.stack([self._known[u] for u in keys])  # (B, D)
        for u in keys:
            self._known.move_to_end(u)
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)
        return out

    def resolve(self, queries: Sequence[UserQuery]) -> Users:
        """Users given by id, history and / or features."""
        uid = self._user_index(queries)
        extra = [self._item_index(q.history) for q in queries]
        hist, mask = padded_histories(self.known, uid, extra, self.max_len)
        # encoded from the request: given features, or an unknown user (OOV id, no stored row)
        custom = np.array([q.features is not None for q in queries], bool) | (uid < 0)
        plain = ~custom & np.array([not q.history for q in queries], bool)
        if plain.all():  # known users by id alone: their stored vectors
            return Users(self._known_vectors(uid, hist, mask), hist, mask)
        feats = self.run.users.gather(torch.from_numpy(np.where(custom, 0, uid)))
        if custom.any():
            rows = [q for q, c in zip(queries, custom, strict=True) if c]
            feats = _with_rows(feats, np.flatnonzero(custom), self._encode_features(rows))
        if not plain.any():
            return Users(self._encode(feats, hist, mask), hist, mask)
        # a mixed batch: only the rows the cache cannot answer go through the tower
        fresh, at = np.flatnonzero(~plain), np.flatnonzero(plain)
        vectors = torch.empty(len(queries), self.item_vectors.shape[1], device=self.device)
        new = self._encode(feats.gather(torch.from_numpy(fresh)), hist[fresh], mask[fresh])
        vectors[torch.from_numpy(fresh)] = new
        vectors[torch.from_numpy(at)] = self._known_vectors(uid[at], hist[at], mask[at])
        return Users(vectors, hist, mask)

    def _item_index(self, items: Sequence[Any] | None) -> np.ndarray:
        if not items:
            return np.empty(0, np.int64)
        return self.run.item_ids.index(id_keys(items, self.run.item_ids))

    def _user_index(self, queries: Sequence[UserQuery]) -> np.ndarray:
        """Catalogue index of each query's user (-1: none or unknown); an unknown id with nothing
        else to go on raises ``UnknownIdError`` naming it."""
        given = [i for i, q in enumerate(queries) if q.user_id is not None]
        keys = list(id_keys([queries[i].user_id for i in given], self.run.user_ids))
        uid = np.full(len(queries), -1, np.int64)
        if given:
            uid[given] = self.run.user_ids.index(keys, missing="minus_one")
        bare = [not q.history and q.features is None for q in queries]
        lost = [key for i, key in zip(given, keys, strict=True) if uid[i] < 0 and bare[i]]
        if lost:
            raise UnknownIdError("user", lost)
        nothing = [i for i, q in enumerate(queries) if q.user_id is None and bare[i]]
        if nothing:
            raise DataError(f"query {nothing[0]} gives no user_id, history or features")
        return uid

    def _encode_features(self, queries: list[UserQuery]) -> EntityFeatures:
        """Raw user features through the run's fitted feature pipeline (unknown ids -> OOV)."""
        if self._pipeline is None:
            self._pipeline = FeaturePipeline.load(self.run.run.features)
        enc = self._pipeline.user_
        columns = [f.name for f in enc.features]
        for q in queries:
            unknown = sorted(set(q.features or {}) - set(columns))
            if unknown:
                raise DataError(
                    f"unknown user feature(s) {unknown}",
                    field=unknown[0],
                    expected=f"one of {columns}",
                )
        rows = [
            {enc.id_column: q.user_id, **{c: (q.features or {}).get(c) for c in columns}}
            for q in queries
        ]
        return enc.transform(pd.DataFrame(rows, columns=[enc.id_column, *columns]))

    @torch.no_grad()
    def _encode(self, feats: EntityFeatures, hist: np.ndarray, mask: np.ndarray) -> Tensor:
        """The user tower over features and the last ``max_len`` history items, (B, D)."""
        n = self.max_len
        tail, tmask = (hist[:, -n:], mask[:, -n:]) if n else (hist[:, :0], mask[:, :0])
        vecs = self.item_vectors[torch.from_numpy(tail).to(self.item_vectors.device)]  # (B, N, D)
        m = torch.from_numpy(np.ascontiguousarray(tmask)).to(self.device)
        return self.run.model.encode_users(feats.to(self.device), vecs, m).float()  # (B, D)


def padded_histories(
    known: UserHistories, users: np.ndarray, extra: list[np.ndarray], min_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) right-aligned histories: each user's stored items (none for index -1) followed by
    ``extra[b]``, and the mask; L = the longest, at least ``min_len`` (what the model was fed).
    Vectorised over users (CSR slices gathered by one fancy index).

    >>> h = UserHistories(np.array([0, 0, 1]), np.array([5, 6, 7]))
    >>> hist, mask = padded_histories(h, np.array([0, -1]), [np.array([9]), np.array([3])], 2)
    >>> hist.tolist(), mask.tolist()
    ([[5, 6, 9], [0, 0, 3]], [[True, True, True], [False, False, True]])
    """
    u = np.where(users >= 0, users, 0)
    stored = np.where(users >= 0, known.indptr[u + 1] - known.indptr[u], 0)  # (B,)
    n_extra = np.array([len(e) for e in extra], dtype=np.int64)
    lengths = stored + n_extra
    width = max(int(lengths.max(initial=0)), min_len)
    hist = np.zeros((len(users), width), np.int64)
    mask = np.zeros((len(users), width), bool)
    rows = np.repeat(np.arange(len(users)), stored)
    offsets = ragged_arange(stored)
    cols = width - lengths[rows] + offsets
    hist[rows, cols] = known.items[known.indptr[u][rows] + offsets]
    mask[rows, cols] = True
    if n_extra.any():
        rows = np.repeat(np.arange(len(users)), n_extra)
        cols = width - np.repeat(n_extra, n_extra) + ragged_arange(n_extra)
        hist[rows, cols] = np.concatenate(extra).astype(np.int64)
        mask[rows, cols] = True
    return hist, mask


def _with_rows(base: EntityFeatures, rows: np.ndarray, new: EntityFeatures) -> EntityFeatures:
    """``base`` with rows ``rows`` replaced by the rows of ``new`` (multi-hot widths padded)."""
    both = EntityFeatures.concat([base, new])
    order = np.arange(len(base))
    order[rows] = len(base) + np.arange(len(new))
    return both.gather(torch.from_numpy(order))
