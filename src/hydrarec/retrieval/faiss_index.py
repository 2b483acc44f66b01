"""``FaissIndex``: approximate maximum inner product search with FAISS (``faiss-cpu``), a drop-in
for ``ExactIndex`` (after implicit's ``ann/faiss.py``).

Two structures, both answering by inner product:

- ``"hnsw"``: a graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
  using Hierarchical Navigable Small World graphs", TPAMI 2018). No training; ``m`` links per node,
  ``ef_search`` candidates kept while searching (raised to k when k is larger). Inner products are
  not a distance, and a graph linked by them can miss most of the answer: on the ML-100K run it
  found 39 % of the exact top 10 at ``ef_search`` 128 (83 % at 800). So ``build`` makes two
  graphs and keeps the one that finds more of the exact top 10 of 200 items searched for
  themselves: one by inner product, and one in Euclidean space over lifted items
  ``[x, sqrt(M^2 - |x|^2)]`` (``M``: the largest item norm), searched with ``[q, 0]``, where
  ``|q' - x'|^2 = |q|^2 + M^2 - 2 q . x`` makes the nearest the largest inner products (Bachrach
  et al., "Speeding up the Xbox recommender system using a Euclidean transformation for
  inner-product spaces", RecSys 2014). Neither wins everywhere: the lifted graph found 100 % on
  the ML-100K run, and 24 % on random directions of log-normal lengths, where the inner-product
  graph found 100 % (``benchmarks/RESULTS.md``, *Serving*). Above ``CHOICE_SAMPLE`` items the
  choice is made on a sample of that many, and only the chosen graph is built over them all.
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

from hydrarec.errors import RunError
from hydrarec.io.atomic import atomic_path
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
PROBES = 200  # items searched for themselves to choose an HNSW graph (``FaissIndex.build``)
# catalogues larger than this choose their graph on a sample of this many items, then build it
# once: the choice costs two graphs of the sample, not two of the catalogue
CHOICE_SAMPLE = 20_000
Method = Literal["hnsw", "ivf"]


def largest_norm(x: np.ndarray) -> float:
    """The largest row norm of ``x`` (0 for no rows): M of the lifted HNSW graph."""
    return float(np.sqrt((x * x).sum(axis=1).max(initial=0.0)))


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
        self.max_norm = 0.0  # M of the Euclidean HNSW graph (see the module doc)

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
            index_ids = as_ids(ids, n)
            self.max_norm = largest_norm(x)
            if n <= CHOICE_SAMPLE:
                self.index_ = self._better_graph(x, index_ids).index_
            else:  # chosen on a sample, then built once over everything
                pick = np.random.default_rng(0).choice(n, CHOICE_SAMPLE, replace=False)
                lifted = self._better_graph(x[pick], index_ids[pick])._euclidean
                self.index_ = self._graph(x, index_ids, lifted)
            return self
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
        if x.shape[1] != self.dim:
            raise ValueError(f"vectors have dim {x.shape[1]}, the index {self.dim}")
        new_ids = as_ids(ids, x.shape[0])
        if not self._euclidean:
            self.index_.add_with_ids(x, new_ids)
            return
        if largest_norm(x) > self.max_norm:
            # a longer vector than any so far: M grows, and every stored item is lifted anew
            stored = faiss.downcast_index(self.index_.index).reconstruct_n(0, len(self))
            old_ids = faiss.vector_to_array(self.index_.id_map).astype(np.int64)
            self.build(np.concatenate([stored[:, :-1], x]), np.concatenate([old_ids, new_ids]))
            return
        self.index_.add_with_ids(self._lift(x), new_ids)

    def _better_graph(self, x: np.ndarray, ids: np.ndarray, k: int = 10) -> FaissIndex:
        """Both HNSW graphs of ``x``, each in an index of its own; the one that finds more of the
        exact top ``k`` of ``PROBES`` items searched for themselves (a fixed sample; the lifted
        one on a tie)."""
        lifted = FaissIndex("hnsw", m=self.m, ef_construction=self.ef_construction)
        lifted.max_norm = largest_norm(x)
        lifted.index_ = lifted._graph(x, ids, lifted=True)
        plain = FaissIndex("hnsw", m=self.m, ef_construction=self.ef_construction)
        plain.index_ = plain._graph(x, ids, lifted=False)
        if len(x) == 0:
            return lifted
        q = x[np.random.default_rng(0).choice(len(x), min(PROBES, len(x)), replace=False)]
        k = min(k, len(x))
        truth = ids[np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]].tolist()

        def hits(index: FaissIndex) -> int:
            found = index.search(q, k)[0].tolist()
            return sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))

        return plain if hits(plain) > hits(lifted) else lifted

    def _graph(self, x: np.ndarray, ids: np.ndarray, lifted: bool) -> Any:
        """An HNSW graph of ``x``: over the lifted vectors (L2), or over ``x`` by inner product."""
        d = x.shape[1]
        if lifted:
            graph = faiss.IndexHNSWFlat(d + 1, self.m, faiss.METRIC_L2)
        else:
            graph = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        index = faiss.IndexIDMap2(graph)
        index.add_with_ids(self._lift(x) if lifted else x, ids)
        return index

    @property
    def dim(self) -> int:
        """Width of the vectors searched (the stored, lifted ones have one more channel)."""
        return int(self.index_.d) - self._euclidean

    @property
    def _euclidean(self) -> bool:
        """An HNSW graph over lifted vectors (all built since the transform; not older saves)."""
        return self.index_ is not None and self.index_.metric_type == faiss.METRIC_L2

    def _lift(self, x: np.ndarray) -> np.ndarray:
        """Items ``[x, sqrt(M^2 - |x|^2)]`` (N, D + 1): every one of norm M."""
        rest = np.maximum(self.max_norm**2 - (x * x).sum(axis=1), 0.0)
        return np.ascontiguousarray(np.hstack([x, np.sqrt(rest)[:, None]]), dtype=np.float32)

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
        scores, ids = self._search(q, fetch)
        return pad_results(ids, scores, k) if extra == 0 else drop_excluded(ids, scores, exclude, k)

    def _search(self, q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's (B, fetch) scores (inner products) and ids, best first."""
        params = self._search_params(fetch)
        if not self._euclidean:
            scores, ids = self.index_.search(q, fetch, params=params)
            return scores, ids
        lifted = np.ascontiguousarray(np.hstack([q, np.zeros((len(q), 1), np.float32)]))
        dist, ids = self.index_.search(lifted, fetch, params=params)  # |q|^2 + M^2 - 2 q . x
        # empty slots (id -1) keep whatever they hold: pad_results clears them
        constant = (q * q).sum(axis=1, keepdims=True) + self.max_norm**2
        return ((constant - dist) / 2).astype(np.float32), ids

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
        # M exactly as searched with (the norm of a stored lifted item is M up to rounding)
        extra = {"max_norm": self.max_norm} if self._euclidean else {}
        write_meta(d, self.kind, self.dim, len(self), {**self.params, **extra})
        with atomic_path(d / FAISS_FILE) as tmp:
            faiss.write_index(self.index_, str(tmp))

    @classmethod
    def load(cls, directory: str | Path) -> FaissIndex:
        meta = read_meta(directory)
        p = dict(meta["params"])
        max_norm = p.pop("max_norm", None)
        try:
            index = cls(p.pop("method"), **p)
        except (KeyError, TypeError, ValueError) as e:  # index.json edited by hand
            raise RunError(
                f"{Path(directory)}/index.json: bad params {meta['params']} ({e})"
            ) from None
        path = Path(directory) / FAISS_FILE
        if not path.is_file():
            raise RunError(f"{path}: missing (expected the saved FAISS index)")
        try:
            index.index_ = faiss.read_index(str(path))
        except RuntimeError as e:  # faiss reports a damaged file as a RuntimeError
            raise RunError(f"{path}: not a readable FAISS index ({str(e).strip()[:300]})") from None
        if (index.index_.ntotal, index.index_.d) != (meta["count"], meta["dim"] + index._euclidean):
            raise RunError(f"{path}: {index.index_.ntotal} vectors of dimension {index.index_.d}, "
                           f"index.json says {meta['count']} of {meta['dim']}")  # fmt: skip
        if index._euclidean:  # a graph over lifted items: M is in the meta, as it was searched
            if max_norm is None:
                raise RunError(f"{directory}: a lifted HNSW graph without its max_norm")
            index.max_norm = float(max_norm)
        return index
