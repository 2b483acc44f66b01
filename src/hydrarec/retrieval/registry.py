"""The index registry: ``RecommendConfig.index`` name -> a factory of an empty index.

Explicit (no discovery): adding an index adds one entry. FAISS is imported only when a FAISS index
is asked for, so hydrarec works without the optional ``faiss-cpu`` dependency (``pip install
hydrarec[ann]``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hydrarec.errors import ConfigError, RunError
from hydrarec.retrieval.base import META_FILE, ItemIndex, read_meta
from hydrarec.retrieval.exact import ExactIndex


def _faiss(method: str) -> Callable[[], ItemIndex]:
    def make() -> ItemIndex:
        try:
            from hydrarec.retrieval.faiss_index import FaissIndex
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError(
                f"recommend.index = 'faiss_{method}' needs faiss-cpu (pip install hydrarec[ann])"
            ) from e
        return FaissIndex("hnsw" if method == "hnsw" else "ivf")

    return make


INDEXES: dict[str, Callable[[], ItemIndex]] = {
    "exact": ExactIndex,
    "faiss_hnsw": _faiss("hnsw"),
    "faiss_ivf": _faiss("ivf"),
}


def make_index(kind: str) -> ItemIndex:
    """An empty index of ``kind`` (a key of ``INDEXES``)."""
    if kind not in INDEXES:
        raise ConfigError(f"recommend.index: unknown index {kind!r} (allowed: {list(INDEXES)})")
    return INDEXES[kind]()


def load_index(directory: str | Path) -> ItemIndex:
    """Load an index saved by ``ItemIndex.save`` (its kind is read from ``index.json``)."""
    kind = str(read_meta(directory)["kind"])
    if kind not in INDEXES:
        raise RunError(f"{Path(directory) / META_FILE}: unknown index kind {kind!r} "
                       f"(allowed: {', '.join(INDEXES)})")  # fmt: skip
    cls = type(make_index(kind))
    index: ItemIndex = cls.load(directory)  # type: ignore[attr-defined]
    return index
