"""New interactions for ``hydrarec update`` (issue 25): a CSV / Parquet file or an event log,
checked and typed like the run's ids.

Columns: ``user_id`` and ``item_id`` (the raw ids of the run's data, matched by the one id rule
of ``match_id_type``: ``"42"`` is user 42 of a run with integer ids), ``timestamp`` (optional,
seconds since the epoch, as the run's data has them), the feedback columns the run's tasks read
(optional, as for ``POST /events``: an empty cell is a missing label), and ``event_id`` /
``received`` (what ``hydrarec events export`` writes; not read). Any other column is an error that
names it, so a misspelt feedback column is never dropped in silence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.data.schema import ITEM_ID, TIMESTAMP, USER_ID
from hydrarec.errors import DataError, Where
from hydrarec.online.export import read_events
from hydrarec.online.store import is_postgres
from hydrarec.recommend.queries import DECIMAL

EXPORT_ONLY = ("event_id", "received")  # columns of an event export that training does not read


def read_file(path: str | Path) -> tuple[pd.DataFrame, Where]:
    """A CSV (with a header) or Parquet file of interactions; ids read as text from a CSV."""
    path = Path(path)
    expected = "a CSV or Parquet file with the columns user_id, item_id[, timestamp, feedback]"
    if not path.is_file():
        raise DataError("file not found", file=path, expected=expected)
    try:
        if path.suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), Where(str(path))
        frame = pd.read_csv(path, dtype={USER_ID: str, ITEM_ID: str})
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=path, expected=expected) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise DataError(f"cannot read interactions: {e}", file=path, expected=expected) from None
    return frame, Where(str(path), first_line=2)  # line 1 is the header


def read_log(target: str | Path) -> tuple[pd.DataFrame, Where]:
    """Every event of an event log (SQLite path or ``postgresql://`` URL), in arrival order."""
    name = "the PostgreSQL event log" if is_postgres(target) else f"event log {target}"
    return read_events(target), Where(name)  # a URL's password is never shown


def check_interactions(
    frame: pd.DataFrame,
    source: Where,
    feedback: list[str],
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> pd.DataFrame:
    """``frame`` checked: ids typed like ``user_ids`` / ``item_ids`` (the run's raw ids),
    ``timestamp`` int64 seconds when given, ``feedback`` columns float (NaN: missing).

    Raises ``DataError`` naming the file, the line and the column for a missing id column, an
    unknown column, an empty table, a missing or mistyped id, a timestamp or feedback value that
    is not a number."""
    allowed = [USER_ID, ITEM_ID, TIMESTAMP, *feedback]
    first_line = 1 if source.first_line else None
    for column in (USER_ID, ITEM_ID):
        if column not in frame.columns:
            raise DataError(
                f"missing column {column!r} (columns: {list(frame.columns)})",
                file=source.source,
                line=first_line,
                field=column,
                expected=f"the columns {allowed}",
            )
    unknown = [c for c in frame.columns if c not in allowed and c not in EXPORT_ONLY]
    if unknown:
        raise DataError(
            f"unknown column {unknown[0]!r}: the run's tasks read the feedback columns "
            f"{feedback or 'none'}",
            file=source.source,
            line=first_line,
            field=str(unknown[0]),
            expected=f"only the columns {allowed}",
        )
    if len(frame) == 0:
        raise source.error(None, USER_ID, "no interactions", "at least one row")
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(
        {
            USER_ID: _typed_ids(frame[USER_ID], user_ids, source, "user"),
            ITEM_ID: _typed_ids(frame[ITEM_ID], item_ids, source, "item"),
        }
    )
    if TIMESTAMP in frame.columns:
        seconds = _numbers(frame[TIMESTAMP], source, TIMESTAMP, missing_ok=False)
        out[TIMESTAMP] = np.floor(seconds).astype(np.int64)
    for column in feedback:
        if column in frame.columns:
            out[column] = _numbers(frame[column], source, column, missing_ok=True)
    return out


def _typed_ids(values: pd.Series, known: np.ndarray, source: Where, kind: str) -> pd.Series:
    """Raw ids of the run's type: integers when the run's ids are integers, else text."""
    column = f"{kind}_id"
    want_int = known.dtype.kind in "iu"
    if values.dtype.kind in "iu":
        return values.astype(np.int64) if want_int else values.map(str).astype(object)
    typed: list[Any] = []
    for row, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v == "":
            raise source.error(row, column, f"missing {kind} id", f"a {kind} id on every row")
        if isinstance(v, float) and v.is_integer():  # a float column: ids read as numbers
            v = int(v)
        if not want_int:
            typed.append(str(v))
        elif _is_integer(v):
            typed.append(int(v))
        else:
            raise source.error(
                row, column, f"{kind} id {v!r} is not an integer", "integer ids, like the run's"
            )
    return pd.Series(typed, dtype=np.int64 if want_int else object)


def _is_integer(v: Any) -> bool:
    """An integer id, or an integer's decimal spelling (``match_id_type``'s rule)."""
    if isinstance(v, str):
        return DECIMAL.fullmatch(v) is not None
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _numbers(values: pd.Series, source: Where, column: str, *, missing_ok: bool) -> np.ndarray:
    """``values`` as float64; a value that is no number (or missing, unless ``missing_ok``) is
    an error naming its row."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    given = values.notna().to_numpy() & (values.astype(str).str.strip() != "").to_numpy()
    bad = ~np.isfinite(numbers) & (given | (not missing_ok))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        what = "missing" if not given[row] else f"{value!r} is not a finite number"
        raise source.error(row, column, what, "a number" + (" or an empty cell" * missing_ok))
    return numbers
