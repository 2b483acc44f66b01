"""Add items to a trained run without retraining: cold start from text and side features.

    new rows -> saved FeaturePipeline (fitted on train)   ids -> 1 (OOV), side features encoded
             -> TextEncoder (the run's model + template)  text vectors (when the run has text),
                                                          or the token states of the frozen
                                                          layers (when it fine-tuned the last)
    RUN/features/items.safetensors   rows appended (EntityFeatures.concat)
    RUN/data/items.parquet           rows appended (lists stored as "a|b", like training)
    RUN/data/ids.json                raw ids appended (catalogue indices of old items unchanged)
    RUN/model.json                   n_items
    RUN/index/                       new vectors added (or rebuilt), when the run has one

The weights are not touched: a new item has no id embedding of its own (its text goes through
the run's fine-tuned language-model layers, when it has some: they are weights). It carries the
out-of-vocabulary id, exactly like an item whose id was dropped in training (``text.id_dropout``),
so the item tower describes it by its features and text. A ``Recommender`` loaded afterwards
recommends the new items. Every file is written to a temporary file first; only when all are
written are they renamed into place (``model.json`` last), under a lock file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomllib
import torch
from filelock import FileLock, Timeout

from hydrarec.config import Config, config_from_dict
from hydrarec.data.schema import ITEM_ID
from hydrarec.errors import DataError, RunError, Where
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.encoders import MultiHotEncoder
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.features.text import STATE_FILE, TextEncoder
from hydrarec.features.text_template import template_columns
from hydrarec.io.atomic import atomic_paths, read_json, write_json
from hydrarec.run.rundir import RunDir, load_run, load_table, save_table
from hydrarec.run.save import STORED_LIST_SEP, join_lists

LOCK = ".add-items.lock"


@dataclass(frozen=True)
class AddedItems:
    """What ``add_items`` did."""

    ids: list[Any]  # raw ids added, in input order
    first_index: int  # catalogue index of the first added item (the others follow)
    n_items: int  # catalogue size after adding


def read_items(path: str | Path) -> pd.DataFrame:
    """An items file (CSV with a header, or Parquet); ids are read as text, matched later."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path, expected="a CSV or Parquet items file")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={ITEM_ID: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read items: {e}", file=path) from None


def add_items_file(
    run: str | Path, path: str | Path, *, progress: bool | None = None
) -> AddedItems:
    """``add_items`` from a file (what ``hydrarec add-items RUN items.csv`` calls)."""
    path = Path(path)
    first_line = None if path.suffix == ".parquet" else 2  # line 1 is the CSV header
    return add_items(run, read_items(path), source=path, first_line=first_line, progress=progress)


def add_items(
    run: str | Path,
    items: pd.DataFrame,
    *,
    source: str | Path | None = None,
    first_line: int | None = None,
    progress: bool | None = None,
) -> AddedItems:
    """Append ``items`` (``item_id`` + the run's item feature and text columns) to ``run``.

    ``source`` / ``first_line`` name where the rows came from, for error messages (row ``i`` is
    line ``first_line + i``). Raises ``DataError`` for a missing column, empty text, a repeated id
    or an id the run already has; then nothing is written.
    """
    rd = RunDir(run).require()
    with _locked(rd.path):
        cfg = config_from_dict(tomllib.loads(rd.config.read_text("utf-8")), str(rd.config))
        pipeline = FeaturePipeline.load(rd.features)
        ids = read_json(rd.data / "ids.json")
        known = np.asarray(ids["items"])
        where = Where(source, first_line)
        new = prepare_items(items, known, pipeline, cfg, where)
        feats = pipeline.transform_items(new)
        table = load_table(rd.features / "items.safetensors")
        raw = pd.read_parquet(rd.data / "items.parquet")
        if not len(table) == len(raw) == len(known):
            raise RunError(
                f"{rd.path}: inconsistent item tables ({len(table)} encoded rows, {len(raw)} raw "
                f"rows, {len(known)} ids); the run cannot take new items"
            )
        if cfg.model.text.enabled:
            add_text(rd, cfg, new, feats, table, where, progress)
        merged = EntityFeatures.concat([table, feats])
        stored = pd.DataFrame({c: new[c] if c in new.columns else pd.NA for c in raw.columns})
        raw_all = pd.concat([raw, join_lists(stored)], ignore_index=True)
        new_ids = new[ITEM_ID].tolist()
        ids["items"] = [*ids["items"], *new_ids]
        meta = read_json(rd.meta)
        meta["n_items"] = len(ids["items"])
        _commit([
            (rd.features / "items.safetensors", lambda p: save_table(p, merged)),
            (rd.data / "items.parquet", lambda p: raw_all.to_parquet(p, index=False)),
            (rd.data / "ids.json", lambda p: write_json(p, ids)),
            (rd.meta, lambda p: write_json(p, meta)),
        ])  # fmt: skip
        _refresh_index(rd, len(known))
    return AddedItems(new_ids, len(known), len(ids["items"]))


def prepare_items(
    items: pd.DataFrame, known: np.ndarray, pipeline: FeaturePipeline, cfg: Config, where: Where
) -> pd.DataFrame:
    """Check the new rows and bring them to the form training saw (ids typed, lists split)."""
    encoder = pipeline.item_
    needed = [ITEM_ID] + [f.name for f in encoder.features]
    if cfg.model.text.enabled:
        needed += [c for c in template_columns(cfg.model.text.template) if c not in needed]
    missing = [c for c in needed if c not in items.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing} (columns: {list(items.columns)})", file=where.source,
            line=1 if where.first_line else None, field=missing[0],
            expected=f"columns {needed}",
        )  # fmt: skip
    if len(items) == 0:
        raise where.error(None, ITEM_ID, "no items to add", "at least one row")
    new = items.reset_index(drop=True).copy()
    new[ITEM_ID] = _typed_ids(new[ITEM_ID], known, where)
    _check_new_ids(new[ITEM_ID], known, where)
    for f in encoder.features:
        if isinstance(f.encoder, MultiHotEncoder) and f.encoder.sep is None:
            new[f.name] = new[f.name].map(_as_list)
    return new


def _typed_ids(values: pd.Series, known: np.ndarray, where: Where) -> pd.Series:
    """Raw ids of the run's type: ints when the run's ids are ints, else strings."""
    if known.dtype.kind not in "iu":
        return values.map(lambda v: "" if v is None or v != v else str(v))
    out = []
    for row, v in enumerate(values.tolist()):
        try:
            if isinstance(v, float) and v.is_integer():  # a float column (e.g. with blanks)
                v = int(v)
            out.append(v if isinstance(v, int) else int(str(v).strip()))  # exact, no float
        except ValueError:
            raise where.error(row, ITEM_ID, f"item id {v!r} is not an integer",
                              "integer ids, like the run's") from None  # fmt: skip
    return pd.Series(out, dtype=np.int64, index=values.index)


def _check_new_ids(ids: pd.Series, known: np.ndarray, where: Where) -> None:
    seen: dict[Any, int] = {}
    for row, v in enumerate(ids.tolist()):
        if v == "":
            raise where.error(row, ITEM_ID, "empty item id", "an id for every item")
        if v in seen:
            raise where.error(row, ITEM_ID, f"item id {v!r} repeats row {seen[v]}", "unique ids")
        seen[v] = row
    exists = np.isin(ids.to_numpy(), known)
    if exists.any():
        row = int(np.flatnonzero(exists)[0])
        raise where.error(
            row, ITEM_ID, f"item id {ids.tolist()[row]!r} already exists in the run",
            "ids that the run does not have (an existing item cannot be re-added)",
        )  # fmt: skip


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, (list, tuple, np.ndarray)):
        return list(v)
    if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
        return []
    return str(v).split(STORED_LIST_SEP)


def add_text(
    rd: RunDir,
    cfg: Config,
    new: pd.DataFrame,
    feats: EntityFeatures,
    table: EntityFeatures,
    where: Where,
    progress: bool | None,
) -> None:
    """Text of the new rows by the run's own model and template (checked): vectors, or the token
    states of the frozen layers when the run fine-tuned the last ones."""
    encoder = TextEncoder(cfg.model.text, progress=progress)
    state_path = rd.features / STATE_FILE
    if state_path.is_file():
        encoder.check_state(read_json(state_path), state_path)
    width = encoder.add_to(feats, new, source=where.source, first_line=where.first_line)
    run_text = table.text if table.text is not None else table.text_states
    same_kind = (feats.text is None) == (table.text is None)  # vectors, or token states
    if run_text is None or not same_kind or run_text.shape[-1] != width:
        had = None if run_text is None else tuple(run_text.shape[1:])
        raise RunError(f"{rd.path}: the run's item text has shape (N, *{had}), the text model "
                       f"gives width {width}")  # fmt: skip


def _commit(writes: list[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write every file to a temp file beside it, then rename them all, in the order given."""
    with atomic_paths(*(target for target, _ in writes)) as temps:
        for tmp, (_, writer) in zip(temps, writes, strict=True):
            writer(tmp)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One add-items at a time per run. An OS lock on the file: the kernel releases it when its
    holder dies, so a killed add-items blocks no later one (the file itself may stay)."""
    try:
        held = FileLock(path / LOCK, timeout=0).acquire()
    except Timeout:
        raise RunError(f"{path}: another add-items is running on this run") from None
    with held:
        yield


def _refresh_index(rd: RunDir, first_new: int) -> None:
    """Bring the run's saved item index (``RUN/index/``, ``hydrarec.run.index``) up to date.

    A current index (built from these weights) gets the new items' vectors added; a stale one is
    rebuilt in full, same kind. A crash before this leaves the index behind the catalogue, which
    ``Recommender`` tolerates (it adds the missing items in memory).
    """
    from hydrarec.evaluation.evaluate import encode_items
    from hydrarec.retrieval.base import read_meta
    from hydrarec.run.index import INDEX_DIR, SOURCE_FILE, build_index, saved_index

    directory = rd.path / INDEX_DIR
    if not (directory / SOURCE_FILE).is_file():
        return
    kind = str(read_meta(directory)["kind"])
    found = saved_index(rd, kind)
    if found is None or len(found[0]) != first_new:
        build_index(rd.path, kind)
        return
    index, source = found
    loaded = load_run(rd.path)
    new = torch.arange(first_new, len(loaded.item_ids))
    vectors = encode_items(loaded.model, loaded.items.gather(new), torch.device("cpu")).cpu()
    index.add(vectors, new.numpy())
    index.save(directory)
    write_json(directory / SOURCE_FILE, {**source, "n_items": len(loaded.item_ids)})
