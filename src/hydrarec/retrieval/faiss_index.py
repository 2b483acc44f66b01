"""``FaissIndex``: approximate maximum inner product search with FAISS (``faiss-cpu``), a drop-in
for ``ExactIndex`` (after implicit's ``ann/faiss.py``).

Two structures, both with the inner product metric:

- ``"hnsw"``: a graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
  using Hierarchical Navigable Small World graphs", TPAMI 2018). No training; ``m`` links per node,
  ``ef_search`` candidates kept while searching (raised to k when k is larger).
- ``"ivf"``: IVF-Flat, an inverted file over ``nlist`` k-means cells of which ``nprobe`` are scanned
  (Jégou et al., "Product quantization for nearest neighbor search", TPAMI 2011, section IV). Needs
  training; by default ``nlist ~ sqrt(N)`` (at most N / 39, FAISS's minimum points per centroid) and
  ``nprobe = nlist / 4``, raised per search so that the cells scanned hold about 2k items.

Search parameters go per call (``faiss.SearchParameters*``), never by mutating the index, so one
index can serve concurrent threads. Ids are kept by FAISS (``IndexIDMap2`` around HNSW, natively in
IVF). Saved with ``faiss.write_index`` (FAISS's binary format, no pickle).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from torch import Tensor

from hydrarec.io import atomic_path
from hydrarec.retrieval.base import (
    Exclusion,
    as_float32,
    as_ids,
    check_k,
    drop_excluded,
    pad_results,
    read_meta,
    write_meta,
)

FAISS_FILE = "faiss.index"
Method = Literal["hnsw", "ivf"]


class FaissIndex:
    """Approximate inner product search: ``method`` is ``"hnsw"`` or ``"ivf"`` (IVF-Flat)."""

    def __init__(
        self,
        method: Method = "hnsw",
        *,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int | None = None,
    ) -> None:
        if method not in ("hnsw", "ivf"):
            raise ValueError(f"method must be 'hnsw' or 'ivf', got {method!r}")
        self.method: Method = method
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.index_: Any = None

    @property
    def kind(self) -> str:
        return f"faiss_{self.method}"

    @property
    def params(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
        }

    def build(self, vectors: np.ndarray | Tensor, ids: np.ndarray) -> FaissIndex:
        x = as_float32(vectors)
        n, d = x.shape
        if self.method == "hnsw":
            graph = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = self.ef_construction
            self.index_ = faiss.IndexIDMap2(graph)
        else:
            self.nlist = self.nlist or max(1, min(round(math.sqrt(n)), n // 39))
            self.nprobe = self.nprobe or max(1, self.nlist // 4)
            quantizer = faiss.IndexFlatIP(d)
            self.index_ = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            self.index_.train(x)
        self.index_.add_with_ids(x, as_ids(ids, n))
        return self

    def add(self, vectors: np.ndarray | Tensor, ids: np.ndarray) -> None:
        x = as_float32(vectors)
        if self.index_ is None:
            self.build(x, ids)
            return
        if x.shape[1] != self.index_.d:
            raise ValueError(f"vectors have dim {x.shape[1]}, the index {self.index_.d}")
        self.index_.add_with_ids(x, as_ids(ids, x.shape[0]))

    def __len__(self) -> int:
        return 0 if self.index_ is None else int(self.index_.ntotal)

    def search(
        self, queries: np.ndarray | Tensor, k: int, exclude: Exclusion | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        check_k(k)
        q = as_float32(queries)  # (B, D)
        extra = 0 if exclude is None else exclude.max_per_row(q.shape[0])
        fetch = min(k + extra, len(self))
        if fetch == 0:
            return pad_results(np.empty((len(q), 0), np.int64), np.empty((len(q), 0)), k)
        scores, ids = self.index_.search(q, fetch, params=self._search_params(fetch))
        if extra == 0:
            return pad_results(ids, scores, k)
        return drop_excluded(ids, scores, exclude, k)

    def _search_params(self, fetch: int) -> Any:
        if self.method == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, fetch))  # type: ignore[attr-defined]
        # scan cells holding about twice ``fetch`` items, or a large k would find too few
        nlist = self.index_.nlist
        wanted = math.ceil(2 * fetch * nlist / max(len(self), 1))
        nprobe = min(nlist, max(self.nprobe or 1, wanted))
        return faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]

    def save(self, directory: str | Path) -> None:
        if self.index_ is None:
            raise ValueError("cannot save an empty FaissIndex: build it first")
        d = Path(directory)
        write_meta(d, self.kind, int(self.index_.d), len(self), self.params)
        with atomic_path(d / FAISS_FILE) as tmp:
            faiss.write_index(self.index_, str(tmp))

    @classmethod
    def load(cls, directory: str | Path) -> FaissIndex:
        meta = read_meta(directory)
        p = dict(meta["params"])
        index = cls(p.pop("method"), **p)
        index.index_ = faiss.read_index(str(Path(directory) / FAISS_FILE))
        return index
