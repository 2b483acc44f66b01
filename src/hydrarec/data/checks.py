"""Checks of loaded tables: labels, duplicate rows, ids and column kinds, each failure a
`DataError` naming file, line and field (``Origins``: of rows concatenated from several files).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hydrarec.data.coerce import ALLOWED, FLOAT32_MAX, Source, shown
from hydrarec.data.schema import Kind
from hydrarec.errors import DataError

Duplicates = Literal["keep_last", "mean", "error"]
MAX_ID_CHARS = 256  # longest id: a 20 MB id once made a 96.6 GiB allocation downstream


class Origins:
    """Where each row of a frame concatenated from several sources came from."""

    def __init__(self, sources: Sequence[Source], lengths: Sequence[int]) -> None:
        self.sources = list(sources)
        self.starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def error(
        self, row: int, field: str | None, message: str, expected: str | None = None
    ) -> DataError:
        """A `DataError` at row ``row`` of the concatenated frame, naming its file and line."""
        which = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.sources[which].error(row - int(self.starts[which]), field, message, expected)

    def where(self, row: int) -> str:
        """'file:line' of row ``row``."""
        e = self.error(row, None, "")
        return f"{e.file}:{e.line}" if e.line is not None else f"{e.file} row {row + 1}"


def check_labels(df: pd.DataFrame, labels: Mapping[str, Kind], src: Source) -> pd.DataFrame:
    """Labels are float32; NaN is an error, and a binary label must be 0 or 1."""
    out = df.copy()
    for name, kind in labels.items():
        try:
            values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        except OverflowError:  # Python ints beyond float64: as text they parse to inf
            values = pd.to_numeric(df[name].astype(str), errors="coerce").to_numpy(np.float64)
        nan = np.isnan(values)
        if nan.any():
            row = int(np.flatnonzero(nan)[0])
            raise src.error(
                row,
                name,
                f"label is {shown(df[name].iloc[row])}, not a number",
                "a number (labels may not be missing)",
            )
        huge = np.abs(values) > FLOAT32_MAX  # inf, or beyond float32 (1e300 would become inf)
        if huge.any():
            row = int(np.flatnonzero(huge)[0])
            raise src.error(
                row, name, f"label is {shown(df[name].iloc[row])}, not a finite number",
                ALLOWED["float"],
            )  # fmt: skip
        if kind is Kind.BINARY and not np.isin(values, (0.0, 1.0)).all():
            row = int(np.flatnonzero(~np.isin(values, (0.0, 1.0)))[0])
            raise src.error(row, name, f"binary label is {values[row]:g}", "0 or 1")
        out[name] = values.astype(np.float32)
    return out


def resolve_duplicates(
    df: pd.DataFrame,
    keys: Sequence[str],
    labels: Mapping[str, Kind],
    policy: Duplicates,
    origins: Origins,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows sharing ``keys`` (e.g. user, item, timestamp): keep the last, average, or raise.

    ``mean`` keeps the last row with regression labels averaged and binary labels maxed (any
    positive counts). Returns the frame and the positions of the rows kept (for given splits).
    """
    if policy not in ("keep_last", "mean", "error"):
        raise DataError(
            f"unknown duplicates policy {policy!r}",
            field="duplicates",
            expected="keep_last, mean or error",
        )
    later = df.duplicated(list(keys), keep="first").to_numpy()
    if not later.any():
        return df, np.arange(len(df), dtype=np.int64)
    if policy == "error":
        row = int(np.flatnonzero(later)[0])
        key = tuple(df[k].iloc[row] for k in keys)
        same = np.logical_and.reduce(
            [df[k].to_numpy() == v for k, v in zip(keys, key, strict=True)]
        )
        first = int(np.flatnonzero(same)[0])
        raise origins.error(
            row,
            ", ".join(keys),
            f"duplicate row ({', '.join(str(v) for v in key)}) (first at {origins.where(first)})",
            "unique (" + ", ".join(keys) + ") (or duplicates = keep_last / mean)",
        )
    df = df.copy()
    if policy == "mean":
        groups = df.groupby(list(keys), sort=False)
        for name, kind in labels.items():
            how: Literal["max", "mean"] = "max" if kind is Kind.BINARY else "mean"
            df[name] = groups[name].transform(how).astype(df[name].dtype)
    keep = np.flatnonzero(~df.duplicated(list(keys), keep="last").to_numpy())
    return df.iloc[keep].reset_index(drop=True), keep.astype(np.int64)


def check_kinds(
    kinds: Mapping[str, str], allowed: Iterable[Kind], *, table: str, file: str | Path | None = None
) -> dict[str, Kind]:
    """Parse column kinds given as strings (e.g. a schema written as a dict)."""
    allowed = list(allowed)
    out: dict[str, Kind] = {}
    for name, kind in kinds.items():
        match = [k for k in allowed if k.value == kind]
        if not match:
            raise DataError(
                f"unknown column kind {kind!r} in the {table} table",
                file=file,
                field=name,
                expected="one of " + ", ".join(k.value for k in allowed),
            )
        out[name] = match[0]
    return out


def require_rows(df: pd.DataFrame, what: str, after: str | None = None) -> None:
    """Raise when ``df`` is empty (``after`` says which filter emptied it)."""
    if len(df) == 0:
        how = f" after {after}" if after else ""
        raise DataError(f"no {what} left{how}", expected=f"at least one {what} row")


def check_id_lengths(df: pd.DataFrame, columns: Iterable[str], src: Source) -> None:
    """Ids (read as text) are at most ``MAX_ID_CHARS`` characters long."""
    for column in columns:
        lengths = df[column].astype(str).str.len().to_numpy()
        if len(lengths) and lengths.max() > MAX_ID_CHARS:
            row = int(np.flatnonzero(lengths > MAX_ID_CHARS)[0])
            raise src.error(
                row, column, f"an id of {lengths[row]:,} characters",
                f"ids of at most {MAX_ID_CHARS} characters",
            )  # fmt: skip


def check_unique(df: pd.DataFrame, column: str, src: Source) -> None:
    """Ids of a users / items table must be unique."""
    dup = df[column].duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise src.error(row, column, f"duplicate id {df[column].iloc[row]!r}", "unique ids")
