"""The ``ItemIndex`` protocol and what every implementation shares.

An index holds item vectors under int64 ids (catalogue indices) and answers maximum inner product
queries: ``search(queries (B, D), k) -> (ids (B, k), scores (B, k))``, best first. Slots that no
item can fill (k larger than the index, or too many items excluded) hold id ``-1`` and score
``-inf``, so the output is always (B, k) (as in benfred/implicit's ``topk``).

Exclusion (e.g. the items a user has seen) is given as pairs ``(rows, ids)``: item ``ids[j]`` must
not be returned for query ``rows[j]``. The exact index masks those scores; an approximate index
asks for ``k + max exclusions of one row`` neighbours and filters, which returns the same items as
searching the remaining catalogue (up to the approximation).

On disk (``save`` / ``load``): ``DIR/index.json`` (format, kind, dim, count, parameters) and the
vectors as a plain file (safetensors, or FAISS's own binary format); no pickle, so loading an index
executes nothing from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from torch import Tensor

from hydrarec.errors import RunError
from hydrarec.io.atomic import write_json
from hydrarec.io.read import read_json_file

FORMAT = "hydrarec.index/1"
META_FILE = "index.json"


class Exclusion(NamedTuple):
    """Pairs that must not be returned: item ``ids[j]`` for query row ``rows[j]``."""

    rows: np.ndarray  # (M,) int64, row of the query batch
    ids: np.ndarray  # (M,) int64, item id (catalogue index)

    def max_per_row(self, n_rows: int) -> int:
        """The most pairs any one row has (how far an approximate index must over-fetch)."""
        return 0 if len(self.rows) == 0 else int(np.bincount(self.rows, minlength=n_rows).max())


@runtime_checkable
class ItemIndex(Protocol):
    """Maximum inner product search over item vectors (see the module docstring)."""

    @property
    def kind(self) -> str:
        """The registry name, e.g. "exact", "faiss_hnsw"."""
        ...

    def build(self, vectors: np.ndarray | Tensor, ids: np.ndarray) -> ItemIndex:
        """Index ``vectors`` (N, D) under ``ids`` (N,) int64, replacing any previous content."""
        ...

    def add(self, vectors: np.ndarray | Tensor, ids: np.ndarray) -> None:
        """Add ``vectors`` (M, D) under new ``ids`` (M,)."""
        ...

    def search(
        self, queries: np.ndarray | Tensor, k: int, exclude: Exclusion | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) int64 ids and (B, k) float32 inner products, best first; -1 / -inf if empty."""
        ...

    def save(self, directory: str | Path) -> None:
        """Write the index to ``directory`` (created if needed)."""
        ...

    def __len__(self) -> int: ...


def as_float32(x: np.ndarray | Tensor) -> np.ndarray:
    """A C-contiguous float32 (N, D) numpy array (what FAISS wants)."""
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_ids(ids: np.ndarray | Tensor | Any, n: int) -> np.ndarray:
    """``ids`` as (n,) int64, checked to be non-negative and of the right length."""
    out = np.asarray(ids.cpu().numpy() if isinstance(ids, Tensor) else ids, dtype=np.int64)
    if out.shape != (n,):
        raise ValueError(f"ids must have shape ({n},), got {out.shape}")
    if n and out.min() < 0:
        raise ValueError("ids must be >= 0 (-1 marks an empty result slot)")
    return out


def check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def pad_results(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen (B, k') results to (B, k) with empty slots (-1, -inf); empty slots as -1 / -inf."""
    scores = scores.astype(np.float32, copy=False)
    ids = np.where(np.isfinite(scores), ids, -1).astype(np.int64)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    if ids.shape[1] >= k:
        return ids[:, :k], scores[:, :k]
    b = ids.shape[0]
    pad = k - ids.shape[1]
    return (
        np.concatenate([ids, np.full((b, pad), -1, np.int64)], axis=1),
        np.concatenate([scores, np.full((b, pad), -np.inf, np.float32)], axis=1),
    )


def drop_excluded(
    ids: np.ndarray, scores: np.ndarray, exclude: Exclusion | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove excluded pairs from over-fetched (B, k') results and keep the first k per row.

    Vectorised: a pair (row, id) is the key ``row * (max_id + 1) + id``; the surviving entries of
    each row move to the front in their original (best-first) order by a stable sort.
    """
    bad = ids < 0
    if exclude is not None and len(exclude.rows):
        span = int(max(ids.max(initial=0), exclude.ids.max(initial=0))) + 1
        rows = np.arange(ids.shape[0])[:, None]
        keys = rows * span + np.where(bad, 0, ids)
        bad |= np.isin(keys, exclude.rows.astype(np.int64) * span + exclude.ids)
    order = np.argsort(bad, axis=1, kind="stable")  # good entries first, order kept
    ids = np.take_along_axis(np.where(bad, -1, ids), order, axis=1)
    scores = np.take_along_axis(np.where(bad, -np.inf, scores), order, axis=1)
    return pad_results(ids, scores, k)


def write_meta(directory: Path, kind: str, dim: int, count: int, params: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "kind": kind, "dim": dim, "count": count, "params": params}
    write_json(directory / META_FILE, meta)


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a saved index; ``RunError`` if missing or of another format."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise RunError(f"no item index: {path} does not exist")
    meta = read_json_file(path, ("kind", "dim", "count", "params"))
    if meta.get("format") != FORMAT:
        raise RunError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(meta["params"], dict) or not all(
        isinstance(meta[k], int) and meta[k] >= 0 for k in ("dim", "count")
    ):
        raise RunError(f"{path}: dim and count must be sizes, params an object")
    return meta
