"""``ExactIndex``: brute-force inner product in torch; the reference every other index is tested
against (tensorflow/recommenders ``BruteForce``, implicit's exact ``topk``).

Scores every query against every item in chunks of at most ``2**24`` scores, masks excluded pairs
with ``-inf`` and takes the top k, so exclusion is exact whatever the number of excluded items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hydrarec.errors import RunError
from hydrarec.io.atomic import write_tensors
from hydrarec.io.read import read_tensor_file
from hydrarec.retrieval.base import (
    META_FILE,
    Exclusion,
    as_ids,
    check_k,
    pad_results,
    read_meta,
    write_meta,
)

VECTORS_FILE = "vectors.safetensors"
CHUNK_SCORES = 1 << 24  # scores held at once: 64 MiB of float32


def _as_tensor(x: np.ndarray | Tensor) -> Tensor:
    t = x.detach() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(dtype=torch.float32, device="cpu")


class ExactIndex:
    """Exact maximum inner product search.

    >>> index = ExactIndex().build(np.eye(3, dtype=np.float32), np.array([10, 11, 12]))
    >>> ids, scores = index.search(np.array([[0.0, 2.0, 1.0]]), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[11, 12]], [[2.0, 1.0]])
    >>> index.search(np.array([[0.0, 2.0, 1.0]]), k=2, exclude=Exclusion(np.array([0]),
    ...                                                                 np.array([11])))[0].tolist()
    [[12, 10]]
    """

    kind = "exact"

    def __init__(self) -> None:
        self.vectors_ = torch.empty(0, 0)  # (N, D)
        self.ids_ = torch.empty(0, dtype=torch.int64)  # (N,)
        self._position = np.empty(0, np.int64)  # id -> row of ``vectors_`` (-1: absent)

    def build(self, vectors: np.ndarray | Tensor, ids: np.ndarray) -> ExactIndex:
        v = _as_tensor(vectors)
        self.vectors_ = v.contiguous()
        self.ids_ = torch.from_numpy(as_ids(ids, v.shape[0]))
        self._reindex()
        return self

    def add(self, vectors: np.ndarray | Tensor, ids: np.ndarray) -> None:
        v = _as_tensor(vectors)
        new = torch.from_numpy(as_ids(ids, v.shape[0]))
        if len(self) == 0:
            self.build(v, new.numpy())
            return
        if v.shape[1] != self.vectors_.shape[1]:
            raise ValueError(f"vectors have dim {v.shape[1]}, the index {self.vectors_.shape[1]}")
        self.vectors_ = torch.cat([self.vectors_, v])
        self.ids_ = torch.cat([self.ids_, new])
        self._reindex()

    def _reindex(self) -> None:
        ids = self.ids_.numpy()
        if len(np.unique(ids)) != len(ids):
            raise ValueError("index ids must be unique")
        self._position = np.full(int(ids.max(initial=-1)) + 1, -1, np.int64)
        self._position[ids] = np.arange(len(ids))

    def __len__(self) -> int:
        return int(self.ids_.shape[0])

    @torch.no_grad()
    def search(
        self, queries: np.ndarray | Tensor, k: int, exclude: Exclusion | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        check_k(k)
        q = _as_tensor(queries)  # (B, D)
        n = len(self)
        kk = min(k, n)
        ids = np.full((q.shape[0], kk), -1, np.int64)
        scores = np.full((q.shape[0], kk), -np.inf, np.float32)
        step = max(1, CHUNK_SCORES // max(n, 1))
        for s in range(0, q.shape[0], step):
            top_i, top_s = self._search_chunk(q[s : s + step], kk, exclude, s)
            ids[s : s + step], scores[s : s + step] = top_i, top_s
        return pad_results(ids, scores, k)

    def _search_chunk(
        self, q: Tensor, k: int, exclude: Exclusion | None, offset: int
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = q @ self.vectors_.T  # (b, N)
        if exclude is not None and len(exclude.rows):
            rows, pos = self._excluded_positions(exclude, offset, q.shape[0])
            scores[torch.from_numpy(rows), torch.from_numpy(pos)] = float("-inf")
        if k == 0:
            return np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32)
        top_s, top_p = torch.topk(scores, k, dim=1)  # (b, k)
        return self.ids_[top_p].numpy(), top_s.numpy()

    def _excluded_positions(
        self, exclude: Exclusion, offset: int, b: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row within the chunk, row of ``vectors_``) of the excluded pairs that fall in it."""
        rows = exclude.rows - offset
        ids = exclude.ids
        ok = (rows >= 0) & (rows < b) & (ids >= 0) & (ids < len(self._position))
        rows, pos = rows[ok], self._position[ids[ok]]
        return rows[pos >= 0], pos[pos >= 0]

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        write_meta(d, self.kind, int(self.vectors_.shape[1]), len(self), self.params)
        write_tensors(d / VECTORS_FILE, {"vectors": self.vectors_, "ids": self.ids_})

    @classmethod
    def load(cls, directory: str | Path) -> ExactIndex:
        meta = read_meta(directory)
        path = Path(directory) / VECTORS_FILE
        t = read_tensor_file(path)
        vectors, ids = t.get("vectors"), t.get("ids")
        shape = (meta["count"], meta["dim"])
        found = {k: tuple(v.shape) for k, v in t.items()}
        if (
            vectors is None
            or ids is None
            or (tuple(vectors.shape), tuple(ids.shape)) != (shape, shape[:1])
        ):
            raise RunError(f"{path}: {found}, but {META_FILE} says 'vectors' {shape}")
        if not vectors.is_floating_point() or ids.is_floating_point():
            raise RunError(f"{path}: 'vectors' must be floats and 'ids' integers")
        return cls().build(vectors, ids.numpy())
