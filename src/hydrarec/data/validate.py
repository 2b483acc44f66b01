"""Validation shared by every loader: bad input becomes a `DataError` naming file, line and field.

Parsing is vectorised (pandas' C parser). Only when it fails, or finds an empty required value, is
the file read again, as text, to find the first offending line; the happy path pays nothing.

Line numbers are 1-based and count the header as line 1. Blank lines are skipped (as pandas does)
and counted; a quoted field that spans several lines would shift the numbers after it.

Numbers must be finite and within float32's range (every model computes in float32: an ``inf`` or
``1e300`` rating would end as ``Infinity`` in metrics.json or a FloatingPointError, issue 21);
integers must fit int64; ids are at most ``MAX_ID_CHARS`` characters (a 20 MB id once made a
96.6 GiB allocation downstream).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hydrarec.data.reading import CountingBytes, megabytes, reading
from hydrarec.data.schema import Kind
from hydrarec.errors import DataError
from hydrarec.training.progress import Bar, Progress

Dtype = Literal["int", "float", "str", "auto"]  # "auto": as pandas infers (ids: ints or strings)
Duplicates = Literal["keep_last", "mean", "error"]

_PANDAS_DTYPE: dict[str, str | None] = {
    "int": "int64",
    "float": "float64",
    "str": "str",
    "auto": None,
}
_EXPECTED = {"int": "an integer", "float": "a number"}
_ALLOWED = {
    "int": "an integer within int64's range",
    "float": "a finite number within float32's range (about ±3.4e38)",
}
_UNIT_SEP = "\x1f"  # stands in for a multi-character separator such as MovieLens-1M's '::'
FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38
INT64_LIMIT = 2.0**63
MAX_ID_CHARS = 256


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
        if not self.raw.strip():
            raise DataError(
                "the file is empty", file=self.path, line=1,
                expected="a header line naming the columns, then one row a line",
            )  # fmt: skip
        try:
            head = pd.read_csv(
                io.BytesIO(self.raw),
                sep=self.sep,
                nrows=0,
                encoding=self.encoding,
                quoting=self._quoting(),
            )
        except pd.errors.EmptyDataError:
            raise DataError(
                "no header line", file=self.path, line=1,
                expected="a header line naming the columns, then one row a line",
            ) from None  # fmt: skip
        except pd.errors.ParserError as e:  # the tokenizer reads ahead: e.g. an unclosed quote
            raise unclosed_quote(self) or DataError(
                f"could not be parsed: {e}", file=self.path
            ) from None
        return [str(c) for c in head.columns]

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of every non-blank line, read by Python (error path only)."""
        text = self.raw.decode(self.encoding, errors="replace")
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=self.sep, quoting=self._quoting()
        )
        with csv_field_limit(len(text)):
            for fields in reader:
                if fields and any(f.strip() for f in fields):
                    yield reader.line_num, fields

    def _quoting(self) -> Literal[0, 3]:  # csv.QUOTE_MINIMAL, csv.QUOTE_NONE
        return 0 if self.quoting else 3


@contextmanager
def csv_field_limit(chars: int) -> Iterator[None]:
    """Let Python's csv module read fields of up to ``chars`` characters (default 131,072): a
    long field is the parsers' to judge, not a csv.Error."""
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, chars + 1))
    try:
        yield
    finally:
        csv.field_size_limit(before)


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
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, TextSource]:
    """Read the columns ``fields`` (name -> dtype) of a delimited text file.

    ``names`` lists every field of a file without a header (its length is the expected field
    count). Columns in ``nullable`` may be empty; columns in ``optional`` may be absent from the
    header. Only an empty field counts as missing ("NA" is a string like any other). A parse
    that lasts shows the megabytes parsed (``data.reading``; default: the enclosing bar's
    ``progress``).
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
        with reading(path, megabytes(len(raw)), "MB", progress) as bar:
            df = _parse(src, dtype, bar)
    except UnicodeDecodeError:
        raise encoding_error(src) from None
    except (ValueError, OverflowError, pd.errors.ParserError) as e:  # Overflow: > int64
        raise diagnose(src, {c: fields[c] for c in use}, nullable, str(e)) from None
    if len(df) == 0:
        raise DataError(
            "no rows" + (" after the header" if header else ""), file=src.path,
            line=2 if header else 1, field=use[0] if use else None, expected="at least one row",
        )  # fmt: skip
    suspect = any(df[c].isna().any() for c in use if c not in nullable)
    suspect |= any(not _finite_f32(df[c]).all() for c in use if fields[c] == "float")
    if suspect or not _counts_ok(src, df):
        raise diagnose(src, {c: fields[c] for c in use}, nullable, "an empty value")
    return df[use], src


def _finite_f32(values: pd.Series) -> np.ndarray:
    """Whether each number is finite within float32's range (NaN counts as fine: missing)."""
    x = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.isnan(x) | (np.abs(x) <= FLOAT32_MAX)


def _parse(
    src: TextSource, dtype: Mapping[str, str] | type[str], bar: Bar | None = None
) -> pd.DataFrame:
    """Every column of ``src`` (no ``usecols``: pandas then ignores surplus fields); its reads
    advance ``bar``, when given, to the megabytes parsed."""
    return pd.read_csv(
        io.BytesIO(src.raw) if bar is None else CountingBytes(src.raw, bar),
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
            expected=f"a column {missing[0]!r} (columns found: {_listed(present)})",
        )


def _listed(names: Sequence[str], most: int = 20) -> str:
    """``names`` for a message: each cut to 40 characters, at most ``most`` of them."""
    shown = [n if len(n) <= 40 else n[:40] + "..." for n in map(str, names[:most])]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")


def encoding_error(src: TextSource) -> DataError:
    """The first line of ``src`` that does not decode as its declared encoding."""
    for number, line in enumerate(src.raw.split(b"\n"), start=1):
        try:
            line.decode(src.encoding)
        except UnicodeDecodeError as e:
            text = line.decode(src.encoding, errors="replace").split(src.sep)
            at = next(i for i, f in enumerate(text) if "\ufffd" in f)
            cols = src.names or (_header_fields(src) if number > 1 else [])
            field = cols[at] if at < len(cols) else f"field {at + 1}"
            return DataError(
                f"byte {line[e.start]:#04x} is not valid {src.encoding}",
                file=src.path,
                line=number,
                field=field,
                expected=f"text encoded as {src.encoding}",
            )
    return DataError("the file does not decode", file=src.path, expected=f"{src.encoding} text")


def unclosed_quote(src: TextSource) -> DataError | None:
    """The line and field where a quote opens that no later quote closes, if there is one."""
    if not src.quoting:
        return None
    text = src.raw.decode(src.encoding, errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=src.sep, strict=True)
    start = 1  # the line the current record starts on
    try:
        with csv_field_limit(len(text)):
            for _ in reader:
                start = reader.line_num + 1
    except csv.Error as e:
        if "end of data" not in str(e):
            return None
    else:
        return None
    line = text.split("\n")[start - 1]
    partial = next(csv.reader([line], delimiter=src.sep), [""])  # the open field comes last
    cols = src.names or (_header_fields(src) if start > 1 else [])
    at = len(partial) - 1
    return DataError(
        "a quote opens here and is never closed (the rest of the file would be one field)",
        file=src.path, line=start, field=cols[at] if at < len(cols) else f"field {at + 1}",
        expected='a closing quote (") in the same field',
    )  # fmt: skip


def _header_fields(src: TextSource) -> list[str]:
    first = src.raw.decode(src.encoding, errors="replace").split("\n", 1)[0]
    return next(csv.reader([first], delimiter=src.sep), [])


def diagnose(
    src: TextSource, fields: Mapping[str, Dtype], nullable: set[str], why: str
) -> DataError:
    """Find the first bad line after the fast parser failed: wrong field count, then bad values."""
    quote = unclosed_quote(src)
    if quote is not None:
        return quote
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
            if fast is not None and (dtype == "int" or _finite_f32(fast).all()):
                out[name] = fast
                continue
            num = pd.to_numeric(col, errors="coerce")
            wrong = num.isna() & col.notna()
            if dtype == "int":
                wrong = wrong | (num.notna() & ((num % 1 != 0) | (num.abs() >= INT64_LIMIT)))
            else:
                wrong = wrong | ~_finite_f32(num)
            if wrong.any():
                row = int(np.flatnonzero(wrong.to_numpy())[0])
                what = _what_is_wrong(float(num.iloc[row]), dtype)
                bad.append((row, name, f"{_shown(col.iloc[row])} is {what}", _ALLOWED[dtype]))
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
        return col.astype(_PANDAS_DTYPE[dtype])  # type: ignore[call-overload]
    except (ValueError, TypeError, OverflowError):  # pyarrow's ArrowInvalid is a ValueError
        return None


def _what_is_wrong(value: float, dtype: Dtype) -> str:
    """Why ``value`` (as parsed, NaN if it is no number) is not a valid ``dtype``."""
    if np.isnan(value):
        return f"not {_EXPECTED[dtype]}"
    if dtype == "float" and np.isinf(value):
        return "not a finite number"
    if dtype == "int" and np.isfinite(value) and value % 1 != 0:
        return "not an integer"
    return "out of range"


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 20 MB value must not fill the message)."""
    text = repr(value.item() if isinstance(value, np.generic) else value)  # 1e+300, not np.…
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value)):,} characters)"


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
                f"label is {_shown(df[name].iloc[row])}, not a number",
                "a number (labels may not be missing)",
            )
        huge = np.abs(values) > FLOAT32_MAX  # inf, or beyond float32 (1e300 would become inf)
        if huge.any():
            row = int(np.flatnonzero(huge)[0])
            raise src.error(
                row, name, f"label is {_shown(df[name].iloc[row])}, not a finite number",
                _ALLOWED["float"],
            )  # fmt: skip
        if kind is Kind.BINARY and not np.isin(values, (0.0, 1.0)).all():
            row = int(np.flatnonzero(~np.isin(values, (0.0, 1.0)))[0])
            raise src.error(row, name, f"binary label is {values[row]:g}", "0 or 1")
        out[name] = values.astype(np.float32)
    return out


def unix_seconds(values: pd.Series, src: Source, field: str = "timestamp") -> np.ndarray:
    """Timestamps as int64 unix seconds, from integers or ISO 8601 date-time strings.

    A column holds one form, the form of its first value; the first value not of that form is
    the error. (Parsing every value as a date once reported 'yesterday' at line 101 of an integer
    column as line 2, the first integer, issue 21.)
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
        raise src.error(row, field, f"bad timestamp {_shown(values.iloc[row])}", _UNIX_SECONDS)
    text = values.astype(str).str.strip()
    unix = text.str.fullmatch(_UNIX).to_numpy(dtype=bool)
    if unix[0]:
        if not unix.all():
            row = int(np.flatnonzero(~unix)[0])
            expected = f"{_UNIX_SECONDS}, as the first row's {_shown(values.iloc[0])}"
            raise src.error(row, field, f"bad timestamp {_shown(values.iloc[row])}", expected)
        return text.astype("int64").to_numpy(np.int64)
    stamps = pd.to_datetime(text.where(~unix), utc=True, errors="coerce", format="ISO8601")
    return _seconds(stamps, values, src, field, f"as the first row's {_shown(values.iloc[0])}")


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
        raise src.error(row, field, f"bad timestamp {_shown(values.iloc[row])}", expected)
    return stamps.dt.as_unit("s").astype("int64").to_numpy(np.int64)  # no ns overflow: year 1001


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
