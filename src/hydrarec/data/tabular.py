"""Generic CSV / Parquet data described by a `TabularConfig` (the ``[data.tabular]`` TOML section).

A file is read as Parquet when its name ends in ``.parquet`` or ``.pq``, else as delimited text
(``.gz`` is unzipped). The configured id and time columns are renamed to ``user_id``, ``item_id``
and ``timestamp``; interaction columns that are neither ids, time nor declared labels are dropped.

- Ids are read as text and kept as ints when every id of that kind is a plain integer ("42", not
  "042"), else as strings, so raw ids stay exactly as in the data.
- Timestamps: integers (unix seconds) or ISO 8601 date-times, stored as int64 seconds. When the
  ``timestamp`` key is left at its default and the files have no such column, there is no time.
- Labels are float32 (binary ones 0 or 1); multi-hot features become lists of tokens split on
  ``multi_hot_sep``; text features become strings ("" when missing); numeric features floats.
- Explicit ``train`` / ``valid`` / ``test`` files are concatenated into one interactions table in
  that order, and ``given_splits["files"]`` holds each part's row positions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import ValidationError

from hydrarec.config import TabularConfig
from hydrarec.data.checks import (
    Duplicates,
    Origins,
    check_id_lengths,
    check_kinds,
    check_labels,
    check_unique,
    resolve_duplicates,
)
from hydrarec.data.coerce import Dtype, Source, unix_seconds
from hydrarec.data.dataset import Dataset
from hydrarec.data.delimited import read_bytes, read_text
from hydrarec.data.parquet import read_parquet
from hydrarec.data.schema import ITEM_ID, LABEL_KINDS, TIMESTAMP, USER_ID, Column, Kind, Schema
from hydrarec.errors import ConfigError, DataError
from hydrarec.io.progress import SHOW_AFTER_S, Bar, Progress, enclosing_progress

FEATURE_KINDS = (Kind.CATEGORICAL, Kind.NUMERIC, Kind.MULTI_HOT, Kind.TEXT)
_FEATURE_DTYPE: dict[Kind, Dtype] = {
    Kind.NUMERIC: "float",
    Kind.CATEGORICAL: "str",
    Kind.MULTI_HOT: "str",
    Kind.TEXT: "str",
}
_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def load_tabular(
    cfg: TabularConfig | Mapping[str, Any],
    base_dir: str | Path,
    *,
    duplicates: Duplicates = "keep_last",
    name: str = "tabular",
    progress: Progress | None = None,
) -> Dataset:
    """Load the files named in ``cfg`` (relative paths are taken from ``base_dir``).

    ``cfg`` may also be a plain dict of the same keys; an unknown column kind in it is a
    `DataError` naming the column. Work that lasts shows its steps (files read, then the id
    and duplicate checks) and each file's megabytes or rows (``data.reading``; ``progress``
    default: the bar open around the call, e.g. "loading data").
    """
    cfg = _config(cfg)
    parts = _parts(cfg)
    steps = len(parts) + 2  # the interactions files, then the entity files, then the checks
    with (progress or enclosing_progress()).task(
        f"loading {name} data", steps, delay=SHOW_AFTER_S
    ) as bar:
        return _load(cfg, parts, base_dir, duplicates, name, bar)


def _load(
    cfg: TabularConfig,
    parts: list[tuple[str, str]],
    base_dir: str | Path,
    duplicates: Duplicates,
    name: str,
    bar: Bar,
) -> Dataset:
    labels = {k: Kind(v) for k, v in cfg.labels.items()}
    frames, sources = [], []
    for _, file in parts:
        df, src = _read_interactions(_resolve(base_dir, file), cfg, labels)
        frames.append(df)
        sources.append(src)
        bar.advance()
    inter = pd.concat(frames, ignore_index=True)
    keys = [USER_ID, ITEM_ID] + ([TIMESTAMP] if TIMESTAMP in inter.columns else [])
    lengths = [len(f) for f in frames]
    inter, kept = resolve_duplicates(inter, keys, labels, duplicates, Origins(sources, lengths))
    part_of_row = np.repeat(np.arange(len(parts)), lengths)[kept]
    users = _read_entities(base_dir, cfg.users, cfg.user_id, USER_ID, cfg.user_features, cfg)
    items = _read_entities(base_dir, cfg.items, cfg.item_id, ITEM_ID, cfg.item_features, cfg)
    bar.advance()
    inter, users = _unify_ids(inter, users, USER_ID)
    inter, items = _unify_ids(inter, items, ITEM_ID)
    given = {}
    if parts[0][0] != "interactions":
        given["files"] = {
            part: np.flatnonzero(part_of_row == i).astype(np.int64)
            for i, (part, _) in enumerate(parts)
        }
    schema = Schema(
        interactions=([Column(TIMESTAMP, Kind.TIMESTAMP)] if TIMESTAMP in inter.columns else [])
        + [Column(n, k) for n, k in labels.items()],
        users=[Column(USER_ID, Kind.ID), *_feature_columns(cfg.user_features)],
        items=[Column(ITEM_ID, Kind.ID), *_feature_columns(cfg.item_features)],
    )
    dataset = Dataset.build(name, inter, schema, users=users, items=items, given_splits=given)
    bar.advance()
    return dataset


def _config(cfg: TabularConfig | Mapping[str, Any]) -> TabularConfig:
    if isinstance(cfg, TabularConfig):
        return cfg
    check_kinds(cfg.get("labels", {}), LABEL_KINDS, table="interactions")
    check_kinds(cfg.get("user_features", {}), FEATURE_KINDS, table="users")
    check_kinds(cfg.get("item_features", {}), FEATURE_KINDS, table="items")
    try:
        return TabularConfig.model_validate(dict(cfg))
    except ValidationError as e:
        raise ConfigError(f"invalid tabular data config: {e}") from None


def _parts(cfg: TabularConfig) -> list[tuple[str, str]]:
    explicit = [(p, f) for p in ("train", "valid", "test") if (f := getattr(cfg, p))]
    if cfg.interactions and explicit:
        raise ConfigError(
            "data.tabular: give either 'interactions' or 'train' / 'test' files, not both; "
            f"remove from [data.tabular]: {', '.join(p for p, _ in explicit)} (split by "
            "[data.split]), or interactions (your own split)"
        )
    if cfg.interactions:
        return [("interactions", cfg.interactions)]
    if not (cfg.train and cfg.test):
        missing = "test" if cfg.train else "train" if cfg.test else "interactions"
        raise ConfigError(
            "data.tabular: needs 'interactions', or 'train' and 'test' (and optionally 'valid'); "
            f'add under [data.tabular]: {missing} = "{missing}.csv" (your file)'
        )
    return explicit


def _resolve(base_dir: str | Path, file: str) -> Path:
    path = Path(file).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def _read_interactions(
    file: Path, cfg: TabularConfig, labels: dict[str, Kind]
) -> tuple[pd.DataFrame, Source]:
    time = cfg.timestamp or None
    fields: dict[str, Dtype] = {cfg.user_id: "str", cfg.item_id: "str"}
    fields |= {time: "str"} if time else {}
    fields |= dict.fromkeys(labels, "auto")
    # the default time column may be absent (data without time); a configured one may not
    optional = [time] if time and "timestamp" not in cfg.model_fields_set else []
    try:
        df, src = _read(file, fields, cfg, nullable=list(labels), optional=optional)
    except DataError as e:
        raise _with_column_fix(e, file, cfg) from None
    check_id_lengths(df, [cfg.user_id, cfg.item_id], src)
    df = check_labels(df, labels, src)
    out = df.rename(columns={cfg.user_id: USER_ID, cfg.item_id: ITEM_ID})
    if time and time in df.columns:
        out = out.drop(columns=time).assign(**{TIMESTAMP: unix_seconds(df[time], src, time)})
    times = [TIMESTAMP] if TIMESTAMP in out.columns else []
    return out[[USER_ID, ITEM_ID, *times, *labels]], src


# other names of the columns a config names (issue 22: a missing one shows the line to set)
_ALIASES = {
    "user_id": ("userid", "user", "uid", "customerid", "visitorid", "sessionid"),
    "item_id": ("itemid", "item", "iid", "movieid", "productid", "asin", "sku", "articleid"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime", "eventtime", "createdat"),
}


def _with_column_fix(error: DataError, file: Path, cfg: TabularConfig) -> DataError:
    """``error`` with the TOML line that fixes it, when it is a configured id or time column
    missing from the header and the header has exactly one column of a known other name."""
    keys = {cfg.user_id: "user_id", cfg.item_id: "item_id", cfg.timestamp: "timestamp"}
    key = keys.get(error.field or "")
    message = f"missing required column {error.field!r}"
    if key is None or message not in str(error):
        return error
    header = _header(file, cfg)
    plain = {c: re.sub(r"[\s_\-.]", "", c.lower()) for c in header}
    found = [c for c, p in plain.items() if p in _ALIASES[key]]
    if len(found) == 1:
        fix = f"set under [data.tabular]: {key} = {json.dumps(found[0])}"
    elif key == "timestamp":
        fix = 'set under [data.tabular]: timestamp = "" (no time: file order)'
    else:
        return error
    return DataError(f"{message}; {fix}", file=error.file, line=error.line, field=error.field,
                     expected=error.expected)  # fmt: skip


def _header(file: Path, cfg: TabularConfig) -> list[str]:
    if _is_parquet(file):
        return [str(c) for c in pq.read_schema(file).names]
    first = read_bytes(file)[: 1 << 16].decode(cfg.encoding, errors="replace").split("\n", 1)[0]
    return [c.strip().strip('"') for c in first.rstrip("\r").split(cfg.sep)]


def _read_entities(
    base_dir: str | Path,
    file: str | None,
    id_in_file: str,
    id_name: str,
    features: Mapping[str, str],
    cfg: TabularConfig,
) -> pd.DataFrame | None:
    if not file:
        return None
    kinds = {n: Kind(k) for n, k in features.items()}
    fields: dict[str, Dtype] = {
        id_in_file: "str",
        **{n: _FEATURE_DTYPE[k] for n, k in kinds.items()},
    }
    df, src = _read(_resolve(base_dir, file), fields, cfg, nullable=list(kinds))
    check_id_lengths(df, [id_in_file], src)
    check_unique(df, id_in_file, src)
    df = df.rename(columns={id_in_file: id_name})
    for n, k in kinds.items():
        if k is Kind.MULTI_HOT:
            df[n] = [
                [t.strip() for t in c.split(cfg.multi_hot_sep) if t.strip()]
                if isinstance(c, str)
                else []
                for c in df[n].tolist()
            ]
        elif k is Kind.TEXT:
            df[n] = df[n].fillna("").astype(str)
    return df[[id_name, *kinds]]


def _read(
    file: Path,
    fields: dict[str, Dtype],
    cfg: TabularConfig,
    nullable: list[str],
    optional: list[str] | None = None,
) -> tuple[pd.DataFrame, Source]:
    if not _is_parquet(file):
        return read_text(
            file,
            fields,
            sep=cfg.sep,
            encoding=cfg.encoding,
            nullable=nullable,
            optional=optional or [],
        )
    return read_parquet(file, fields, nullable=nullable, optional=optional or [])


def _is_parquet(file: Path) -> bool:
    return file.suffix.lower() in (".parquet", ".pq")


def _unify_ids(
    inter: pd.DataFrame, table: pd.DataFrame | None, column: str
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Ints when every id in the interactions and the table is a plain integer, else strings."""
    cols = [inter[column]] + ([table[column]] if table is not None else [])
    as_int = all(_plain_ints(c) for c in cols)
    conv = (lambda c: c.astype("int64")) if as_int else (lambda c: c.astype(str))
    inter = inter.assign(**{column: conv(inter[column])})
    if table is not None:
        table = table.assign(**{column: conv(table[column])})
    return inter, table


def _plain_ints(ids: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(ids):
        return True
    return bool(ids.astype(str).str.fullmatch(_PLAIN_INT).all())


def _feature_columns(features: Mapping[str, str]) -> list[Column]:
    return [Column(n, Kind(k)) for n, k in features.items()]
