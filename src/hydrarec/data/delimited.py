"""Delimited text files (CSV, MovieLens' ``::`` and tab files) read into typed columns; a file
that does not parse becomes a `DataError` naming its first bad line and field.

Parsing is vectorised (pandas' C parser). Only when it fails, or finds an empty required value, is
the file read again, as text, to find the first offending line (bad encoding, an unclosed quote,
a wrong field count, then bad values); the happy path pays nothing.

Line numbers are 1-based and count the header as line 1. Blank lines are skipped (as pandas does)
and counted; a quoted field that spans several lines would shift the numbers after it.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hydrarec.data.coerce import PANDAS_DTYPE, Dtype, Source, coerce, finite_f32
from hydrarec.data.reading import CountingBytes, megabytes, reading
from hydrarec.errors import DataError
from hydrarec.io.progress import Bar, Progress

_UNIT_SEP = "\x1f"  # stands in for a multi-character separator such as MovieLens-1M's '::'


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
    dtype = {c: d for c in use if (d := PANDAS_DTYPE[fields[c]])}
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
    suspect |= any(not finite_f32(df[c]).all() for c in use if fields[c] == "float")
    if suspect or not _counts_ok(src, df):
        raise diagnose(src, {c: fields[c] for c in use}, nullable, "an empty value")
    return df[use], src


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
    for number, record in islice(src.records(), int(src.header), None):  # past the header
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
