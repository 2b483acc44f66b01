"""Columns cast to the types a loader declares: the first bad value (the lowest row) is a
`DataError` naming its file, line and field (``Source``).

Numbers must be finite and within float32's range (every model computes in float32: an ``inf`` or
``1e300`` rating would end as ``Infinity`` in metrics.json or a FloatingPointError); integers
must fit int64. Timestamps become unix seconds, from integers or ISO 8601 strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hydrarec.errors import DataError

Dtype = Literal["int", "float", "str", "auto"]  # "auto": as pandas infers (ids: ints or strings)

PANDAS_DTYPE: dict[str, str | None] = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "auto": None,
}
_EXPECTED = {"int": "an integer", "float": "a number"}
ALLOWED = {
    "int": "an integer within int64's range",
    "float": "a finite number within float32's range (about ±3.4e38)",
}
FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38
INT64_LIMIT = 2.0**63


class Source:
    """A file rows were read from; names the line of a row in error messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def line(self, row: int) -> int | None:
        """The 1-based line of parsed row ``row``, or None where the format has no lines."""
        return None

    def error(
        self, row: int | None, field: str | None, message: str, expected: str | None = None
    ) -> DataError:
        """A `DataError` at ``row`` (a 0-based position among the parsed rows)."""
        line = self.line(row) if row is not None else None
        if row is not None and line is None:
            message = f"row {row + 1}: {message}"
        return DataError(message, file=self.path, line=line, field=field, expected=expected)


def coerce(
    df: pd.DataFrame, fields: Mapping[str, Dtype], src: Source, nullable: Iterable[str] = ()
) -> pd.DataFrame:
    """Cast ``df``'s columns to their dtypes; the first bad value (the lowest row) raises."""
    nullable, out, bad = set(nullable), df.copy(), []
    for name, dtype in fields.items():
        col = df[name]
        if name not in nullable and col.isna().any():
            row = int(np.flatnonzero(col.isna().to_numpy())[0])
            bad.append((row, name, "empty value", _EXPECTED.get(dtype, "a value")))
        if dtype in ("int", "float"):
            fast = _cast(col, dtype)
            if fast is not None and (dtype == "int" or finite_f32(fast).all()):
                out[name] = fast
                continue
            num = pd.to_numeric(col, errors="coerce")
            wrong = num.isna() & col.notna()
            if dtype == "int":
                wrong = wrong | (num.notna() & ((num % 1 != 0) | (num.abs() >= INT64_LIMIT)))
            else:
                wrong = wrong | ~finite_f32(num)
            if wrong.any():
                row = int(np.flatnonzero(wrong.to_numpy())[0])
                what = _what_is_wrong(float(num.iloc[row]), dtype)
                bad.append((row, name, f"{shown(col.iloc[row])} is {what}", ALLOWED[dtype]))
                continue
            out[name] = num.astype(
                "int64" if dtype == "int" and not num.isna().any() else "float64"
            )
    if bad:
        row, name, message, expected = min(bad, key=lambda b: b[0])
        raise src.error(row, name, message, expected)
    return out


def _cast(col: pd.Series, dtype: Dtype) -> pd.Series | None:
    """A fast cast of a clean column (strings or ints); None when it needs the careful path."""
    if pd.api.types.is_float_dtype(col) or col.isna().any():  # float -> int would truncate
        return None
    try:
        return col.astype(PANDAS_DTYPE[dtype])  # type: ignore[call-overload]
    except (ValueError, TypeError, OverflowError):  # pyarrow's ArrowInvalid is a ValueError
        return None


def finite_f32(values: pd.Series) -> np.ndarray:
    """Whether each number is finite within float32's range (NaN counts as fine: missing)."""
    x = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.isnan(x) | (np.abs(x) <= FLOAT32_MAX)


def _what_is_wrong(value: float, dtype: Dtype) -> str:
    """Why ``value`` (as parsed, NaN if it is no number) is not a valid ``dtype``."""
    if np.isnan(value):
        return f"not {_EXPECTED[dtype]}"
    if dtype == "float" and np.isinf(value):
        return "not a finite number"
    if dtype == "int" and np.isfinite(value) and value % 1 != 0:
        return "not an integer"
    return "out of range"


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 20 MB value must not fill the message)."""
    text = repr(value.item() if isinstance(value, np.generic) else value)  # 1e+300, not np.…
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value)):,} characters)"


def unix_seconds(values: pd.Series, src: Source, field: str = "timestamp") -> np.ndarray:
    """Timestamps as int64 unix seconds, from integers or ISO 8601 date-time strings.

    A column holds one form, the form of its first value; the first value not of that form is
    the error (a stray 'yesterday' in an integer column is reported at its own line).
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return _seconds(pd.to_datetime(values, utc=True), values, src, field, "a date-time")
    fast = _cast(values, "int")
    if fast is not None:
        return fast.to_numpy(np.int64)
    if pd.api.types.is_numeric_dtype(values):  # floats: NaN, fractional or beyond int64?
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(x) & (np.abs(x) < INT64_LIMIT)
        whole[whole] = x[whole] % 1 == 0
        if whole.all():
            return x.astype(np.int64)
        row = int(np.flatnonzero(~whole)[0])
        raise src.error(row, field, f"bad timestamp {shown(values.iloc[row])}", _UNIX_SECONDS)
    text = values.astype(str).str.strip()
    unix = text.str.fullmatch(_UNIX).to_numpy(dtype=bool)
    if unix[0]:
        if not unix.all():
            row = int(np.flatnonzero(~unix)[0])
            expected = f"{_UNIX_SECONDS}, as the first row's {shown(values.iloc[0])}"
            raise src.error(row, field, f"bad timestamp {shown(values.iloc[row])}", expected)
        return text.astype("int64").to_numpy(np.int64)
    stamps = pd.to_datetime(text.where(~unix), utc=True, errors="coerce", format="ISO8601")
    return _seconds(stamps, values, src, field, f"as the first row's {shown(values.iloc[0])}")


_UNIX = re.compile(r"[+-]?[0-9]{1,18}")
_UNIX_SECONDS = "unix seconds (an integer)"


def _seconds(
    stamps: pd.Series, values: pd.Series, src: Source, field: str, like: str
) -> np.ndarray:
    """Unix seconds of parsed date-times; the first that did not parse (NaT) raises."""
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        expected = f"an ISO 8601 date-time ({like}) or, in a column of them, unix seconds"
        raise src.error(row, field, f"bad timestamp {shown(values.iloc[row])}", expected)
    return stamps.dt.as_unit("s").astype("int64").to_numpy(np.int64)  # no ns overflow: year 1001
