"""Build the item index of a trained run and save it in ``RUN/index/``.

``RUN/index/source.json`` records what the index was built from (the SHA-256 of
``model.safetensors`` and the number of items), so a loader can tell a stale index (the model was
retrained, or items were added) from a current one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from hydrarec.evaluation.evaluate import encode_items
from hydrarec.io.atomic import write_json
from hydrarec.io.progress import SHOW_AFTER_S, Progress, enclosing_progress
from hydrarec.io.read import read_json_file
from hydrarec.retrieval.base import META_FILE, ItemIndex
from hydrarec.retrieval.registry import load_index, make_index
from hydrarec.run.rundir import LoadedRun, RunDir, load_run

INDEX_DIR = "index"
SOURCE_FILE = "source.json"


def model_fingerprint(run: RunDir) -> str:
    """SHA-256 of the run's weights file (a few MB: milliseconds)."""
    h = hashlib.sha256()
    with open(run.model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def index_from_vectors(kind: str, vectors: Tensor | np.ndarray) -> ItemIndex:
    """An index of ``kind`` over catalogue vectors (ids = catalogue indices 0..N-1)."""
    return make_index(kind).build(vectors, np.arange(len(vectors), dtype=np.int64))


ENCODE_STEP = 8192  # items encoded at a time, between two advances of the progress bar


def build_index(
    run: LoadedRun | str | Path, kind: str | None = None, progress: Progress | None = None
) -> ItemIndex:
    """Encode every item of ``run``, index the vectors and save the index in ``RUN/index/``.

    ``kind`` defaults to the run's ``recommend.index``. ``progress`` (default: the bar open
    around the call, e.g. ``add-items``') shows the items encoded when that lasts (issue 22: a
    catalogue of millions of items is minutes of work).
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    device = next(loaded.model.parameters()).device
    n = len(loaded.items)
    bars = progress or enclosing_progress()
    with bars.task("indexing items", n, unit="items", delay=SHOW_AFTER_S) as bar:
        vectors = encode_items(
            loaded.model, loaded.items, device, ENCODE_STEP, lambda k: bar.advance(n=k)
        ).cpu()  # (I, D)
        index = index_from_vectors(kind or loaded.config.recommend.index, vectors)
    directory = loaded.run.path / INDEX_DIR
    index.save(directory)
    source = {"model_sha256": model_fingerprint(loaded.run), "n_items": len(vectors)}
    write_json(directory / SOURCE_FILE, source)
    return index


def saved_kind(run: RunDir) -> str | None:
    """The kind of the run's saved index, None without one."""
    meta = run.path / INDEX_DIR / META_FILE
    return str(read_json_file(meta, ("kind",))["kind"]) if meta.is_file() else None


def saved_index(run: RunDir, kind: str) -> tuple[ItemIndex, dict[str, Any]] | None:
    """The run's saved index and its ``source.json`` if there is one of ``kind`` built from the
    current weights; None otherwise (no index, another kind, or retrained since)."""
    directory = run.path / INDEX_DIR
    if not (directory / SOURCE_FILE).is_file():
        return None
    source = read_json_file(directory / SOURCE_FILE)
    if source.get("model_sha256") != model_fingerprint(run):
        return None
    index = load_index(directory)
    return (index, source) if index.kind == kind else None
