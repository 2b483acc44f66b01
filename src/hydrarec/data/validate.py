"""Validation shared by every loader: bad input becomes a `DataError` naming file, line and field.

Parsing is vectorised (pandas' C parser). Only when it fails, or finds an empty required value, is
the file read again, as text, to find the first offending line; the happy path pays nothing.

Line numbers are 1-based and count the header as line 1. Blank lines are skipped (as pandas does)
and counted; a quoted field that spans several lines would shift the numbers after it.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hydrarec.data.schema import Kind
from hydrarec.errors import DataError

Dtype = Literal["int", "float", "str", "auto"]  # "auto": as pandas infers (ids: ints or strings)
Duplicates = Literal["keep_last", "mean", "error"]

_PANDAS_DTYPE: dict[str, str | None] = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "auto": None,
}
_EXPECTED = {"int": "an integer", "float": "a number"}
_UNIT_SEP = "\x1f"  # stands in for a multi-character separator such as MovieLens-1M's '::'


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


class TextSource(Source):
    """A delimited text file held in memory, as bytes."""

    def __init__(
        self,
        path: str | Path,
        raw: bytes,
        *,
        sep: str,
        header: bool,
        encoding: str,
        quoting: bool,
        names: Sequence[str] | None,
        shown_sep: str | None = None,
    ) -> None:
        super().__init__(path)
        self.raw, self.sep, self.header, self.encoding = raw, sep, header, encoding
        self.quoting, self.names = quoting, list(names) if names else None
        self.shown_sep = shown_sep or sep  # as the file has it (e.g. '::'), for messages
        self._lines: np.ndarray | None = None

    def line(self, row: int) -> int | None:
        if self._lines is None:  # line numbers of the non-blank lines, header dropped
            lines = [i + 1 for i, t in enumerate(self.raw.split(b"\n")) if t.strip()]
            self._lines = np.asarray(lines[1:] if self.header else lines, dtype=np.int64)
        return int(self._lines[row]) if row < len(self._lines) else None

    def columns(self) -> list[str]:
        """The field names: the header's, or the ``names`` given for a file without one."""
        if not self.header:
            return list(self.names or [])
        head = pd.read_csv(
            io.BytesIO(self.raw),
            sep=self.sep,
            nrows=0,
            encoding=self.encoding,
            quoting=self._quoting(),
        )
        return [str(c) for c in head.columns]

    def records(self) -> Iterable[tuple[int, list[str]]]:
        """(line number, fields) of every non-blank line, read by Python (error path only)."""
        text = self.raw.decode(self.encoding, errors="replace")
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=self.sep, quoting=self._quoting()
        )
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                yield reader.line_num, fields

    def _quoting(self) -> Literal[0, 3]:  # csv.QUOTE_MINIMAL, csv.QUOTE_NONE
        return 0 if self.quoting else 3


def read_bytes(path: str | Path) -> bytes:
    """The bytes of ``path`` (gunzipped when it ends in .gz); a missing file is a `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path, expected="an existing file")
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def read_text(
    path: str | Path,
    fields: Mapping[str, Dtype],
    *,
    sep: str = ",",
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    quoting: bool = True,
    nullable: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> tuple[pd.DataFrame, TextSource]:
    """Read the columns ``fields`` (name -> dtype) of a delimited text file.

    ``names`` lists every field of a file without a header (its length is the expected field
    count). Columns in ``nullable`` may be empty; columns in ``optional`` may be absent from the
    header. Only an empty field counts as missing ("NA" is a string like any other).
    """
    raw = read_bytes(path)
    shown = sep
    if len(sep) > 1:
        raw, sep = raw.replace(sep.encode(encoding), _UNIT_SEP.encode(encoding)), _UNIT_SEP
    src = TextSource(
        path,
        raw,
        sep=sep,
        header=header,
        encoding=encoding,
        quoting=quoting,
        names=names,
        shown_sep=shown,
    )
    try:
        present = src.columns()
    except UnicodeDecodeError:
        raise encoding_error(src) from None
    require_columns(src, fields, present, optional)
    use = [c for c in fields if c in present]
    nullable = set(nullable)
    dtype = {c: d for c in use if (d := _PANDAS_DTYPE[fields[c]])}
    try:
        df = _parse(src, dtype)
    except UnicodeDecodeError:
        raise encoding_error(src) from None
    except (ValueError, pd.errors.ParserError) as e:
        raise diagnose(src, {c: fields[c] for c in use}, nullable, str(e)) from None
    if any(df[c].isna().any() for c in use if c not in nullable) or not _counts_ok(src, df):
        raise diagnose(src, {c: fields[c] for c in use}, nullable, "an empty value")
    return df[use], src


def _parse(src: TextSource, dtype: Mapping[str, str] | type[str]) -> pd.DataFrame:
    """Every column of ``src`` (no ``usecols``: pandas then ignores surplus fields)."""
    return pd.read_csv(
        io.BytesIO(src.raw),
        sep=src.sep,
        header=0 if src.header else None,
        names=None if src.header else src.names,
        dtype=dtype,  # type: ignore[arg-type]
        encoding=src.encoding,
        quoting=src._quoting(),
        keep_default_na=False,
        na_values=[""],
        engine="c",
    )


def _counts_ok(src: TextSource, df: pd.DataFrame) -> bool:
    """Whether every line of an unquoted file has all its fields (pandas pads short lines)."""
    if src.quoting or len(src.sep.encode(src.encoding)) != 1:
        return True  # quoted separators cannot be counted this way; pandas checks surplus ones
    data = np.frombuffer(src.raw, dtype=np.uint8)
    ends = np.append(np.flatnonzero(data == 10), len(data))  # line ends (b"\n")
    seps = np.searchsorted(np.flatnonzero(data == src.sep.encode(src.encoding)[0]), ends)
    per_line = np.diff(np.concatenate([[0], seps]))
    starts = np.concatenate([[0], ends[:-1] + 1])
    blank = (ends - starts) <= 1  # empty, or a lone "\r"
    return bool((blank | (per_line == df.shape[1] - 1)).all())


def require_columns(
    src: Source, fields: Iterable[str], present: Sequence[str], optional: Iterable[str] = ()
) -> None:
    """Every column of ``fields`` not in ``optional`` must be in ``present`` (the header)."""
    missing = [c for c in fields if c not in present and c not in set(optional)]
    if missing:
        raise DataError(
            f"missing required column {missing[0]!r}",
            file=src.path,
            line=1 if isinstance(src, TextSource) else None,
            field=missing[0],
            expected=f"a column {missing[0]!r} (columns found: {', '.join(present)})",
        )


def encoding_error(src: TextSource) -> DataError:
    """The first line of ``src`` that does not decode as its declared encoding."""
    for number, line in enumerate(src.raw.split(b"\n"), start=1):
        try:
            line.decode(src.encoding)
        except UnicodeDecodeError as e:
            text = line.decode(src.encoding, errors="replace").split(src.sep)
            at = next(i for i, f in enumerate(text) if "\ufffd" in f)
            cols = src.names or (src.columns() if number > 1 else [])
            field = cols[at] if at < len(cols) else f"field {at + 1}"
            return DataError(
                f"byte {line[e.start]:#04x} is not valid {src.encoding}",
                file=src.path,
                line=number,
                field=field,
                expected=f"text encoded as {src.encoding}",
            )
    return DataError("the file does not decode", file=src.path, expected=f"{src.encoding} text")


def diagnose(
    src: TextSource, fields: Mapping[str, Dtype], nullable: set[str], why: str
) -> DataError:
    """Find the first bad line after the fast parser failed: wrong field count, then bad values."""
    cols = src.columns()
    records = iter(src.records())
    if src.header:
        next(records, None)
    for number, record in records:
        if len(record) != len(cols):
            missing = cols[len(record)] if len(record) < len(cols) else None
            return DataError(
                f"malformed line: {len(record)} fields",
                file=src.path,
                line=number,
                field=missing,
                expected=f"{len(cols)} fields separated by {src.shown_sep!r}",
            )
    try:
        coerce(_parse(src, str)[list(fields)], fields, src, nullable)
    except DataError as e:
        return e
    except (ValueError, pd.errors.ParserError) as e:
        why = str(e)
    return DataError(f"could not be parsed: {why}", file=src.path)


def coerce(
    df: pd.DataFrame, fields: Mapping[str, Dtype], src: Source, nullable: Iterable[str] = ()
) -> pd.DataFrame:
    """Cast ``df``'s columns to their dtypes; the first bad value (the lowest row) raises."""
    nullable, out, bad = set(nullable), df.copy(), []
    for name, dtype in fields.items():
        col = df[name]
        if name not in nullable and col.isna().any():
            bad.append(
                (
                    int(np.flatnonzero(col.isna().to_numpy())[0]),
                    name,
                    "empty value",
                    _EXPECTED.get(dtype, "a value"),
                )
            )
        if dtype in ("int", "float"):
            fast = _cast(col, dtype)
            if fast is not None:
                out[name] = fast
                continue
            num = pd.to_numeric(col, errors="coerce")
            wrong = num.isna() & col.notna()
            if dtype == "int":
                wrong = wrong | (num.notna() & (num % 1 != 0))
            if wrong.any():
                row = int(np.flatnonzero(wrong.to_numpy())[0])
                bad.append(
                    (row, name, f"{col.iloc[row]!r} is not {_EXPECTED[dtype]}", _EXPECTED[dtype])
                )
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
        return col.astype(_PANDAS_DTYPE[dtype])  # type: ignore[call-overload]
    except (ValueError, TypeError):  # pyarrow's ArrowInvalid is a ValueError
        return None


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
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        nan = np.isnan(values)
        if nan.any():
            row = int(np.flatnonzero(nan)[0])
            raise src.error(
                row,
                name,
                f"label is {df[name].iloc[row]!r}, not a number",
                "a number (labels may not be missing)",
            )
        if kind is Kind.BINARY and not np.isin(values, (0.0, 1.0)).all():
            row = int(np.flatnonzero(~np.isin(values, (0.0, 1.0)))[0])
            raise src.error(row, name, f"binary label is {values[row]:g}", "0 or 1")
        out[name] = values.astype(np.float32)
    return out


def unix_seconds(values: pd.Series, src: Source, field: str = "timestamp") -> np.ndarray:
    """Timestamps as int64 unix seconds, from integers or ISO 8601 date-time strings."""
    expected = "unix seconds (an integer) or an ISO 8601 date-time"
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
    else:
        fast = _cast(values, "int")
        if fast is not None:
            return fast.to_numpy(np.int64)
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().all() and (numbers % 1 == 0).all():
            return numbers.to_numpy().astype(np.int64)
        if pd.api.types.is_numeric_dtype(values):  # NaN or fractional seconds
            row = int(np.flatnonzero((numbers.isna() | (numbers % 1 != 0)).to_numpy())[0])
            raise src.error(row, field, f"bad timestamp {values.iloc[row]!r}", expected)
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise src.error(row, field, f"bad timestamp {values.iloc[row]!r}", expected)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


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


def check_unique(df: pd.DataFrame, column: str, src: Source) -> None:
    """Ids of a users / items table must be unique."""
    dup = df[column].duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise src.error(row, column, f"duplicate id {df[column].iloc[row]!r}", "unique ids")
