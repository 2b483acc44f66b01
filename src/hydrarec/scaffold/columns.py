"""What each column of a user's files is, guessed from its name and a sample of its values.

``hydrarec init`` (issue 22) reads the header and the first ``SAMPLE_ROWS`` rows of each file and
gives every column a role (user id, item id, timestamp, label, feature or ignored), a kind where
the role has kinds, and the reason, in words, so that the user can check the guess.

>>> df = pd.DataFrame({"user": ["1", "2"], "movie_id": ["7", "8"], "stars": ["4", "5"]})
>>> [(g.column, g.role, g.kind) for g in guess_interactions(df)]
[('user', 'user_id', None), ('movie_id', 'item_id', None), ('stars', 'label', 'regression')]
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from hydrarec.data.delimited import read_bytes
from hydrarec.errors import DataError

SAMPLE_ROWS = 5000  # rows read to guess kinds (the whole file is read only for ids and labels)
Role = Literal["user_id", "item_id", "timestamp", "label", "feature", "ignored"]

# names compared lower-case without "_", "-", " ": "userId", "user_id" and "User ID" are one name
USER_NAMES = ("userid", "user", "uid", "customerid", "customer", "visitorid", "clientid",
              "accountid", "memberid", "readerid", "reviewerid", "sessionid")  # fmt: skip
ITEM_NAMES = ("itemid", "item", "iid", "movieid", "productid", "product", "asin", "sku",
              "articleid", "bookid", "isbn", "songid", "trackid", "contentid", "docid", "newsid",
              "videoid", "poiid", "businessid", "recipeid", "gameid", "animeid")  # fmt: skip
TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date", "eventtime", "createdat",
              "unixtime", "unixreviewtime", "when", "eventdate")  # fmt: skip
RATING_NAMES = ("rating", "score", "stars", "star", "grade", "rate", "overall", "value")
TEXT_NAMES = ("title", "name", "description", "text", "summary", "review", "abstract",
              "content", "caption", "body", "overview", "plot", "headline")  # fmt: skip
CODE_SUFFIXES = ("id", "code", "zip", "zipcode", "postcode")
MULTI_HOT_SEPS = ("|", ";")  # token separators tried inside a cell, in this order
MAX_RATING_LEVELS = 21  # a numeric column with more distinct values is not read as a rating
TEXT_MIN_WORDS = 3.0  # mean words per cell from which a free string column is text


@dataclass(frozen=True)
class Guess:
    """One column's guessed role and kind, and why."""

    column: str
    role: Role
    kind: str | None  # label: regression / binary; feature: categorical / numeric / ...
    why: str


@dataclass(frozen=True)
class Sample:
    """The header and first rows of one file, every value as text ("" where missing)."""

    path: Path
    frame: pd.DataFrame
    sep: str  # the field separator of a text file ("," for Parquet, where it is unused)

    @property
    def is_parquet(self) -> bool:
        return is_parquet(self.path)


def plain(name: str) -> str:
    """``name`` lower-case without separators: ``plain("User ID") == "userid"``."""
    return re.sub(r"[\s_\-.]", "", name.lower())


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def sniff_sep(first_line: str) -> str:
    """The field separator of a header line: tab, ";" or ",", the most frequent of them.

    >>> sniff_sep("user_id\\titem_id\\tgenres"), sniff_sep("a;b"), sniff_sep("title")
    ('\\t', ';', ',')
    """
    counts = {sep: first_line.count(sep) for sep in ("\t", ";", ",")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def read_sample(path: Path, rows: int = SAMPLE_ROWS) -> Sample:
    """The header and the first ``rows`` rows of a CSV / TSV (.gz too) or Parquet file."""
    if not path.is_file():
        raise DataError("file not found", file=path, expected="a CSV, TSV or Parquet file")
    if is_parquet(path):
        reader = pq.ParquetFile(path)
        batch = next(reader.iter_batches(batch_size=rows), None)
        frame = (batch.to_pandas() if batch is not None else reader.schema_arrow.empty_table()
                 .to_pandas())  # fmt: skip
        return Sample(path, _as_text(frame), ",")
    head = read_bytes(path)[: 1 << 16].decode("utf-8", errors="replace")
    sep = sniff_sep(head.split("\n", 1)[0])
    frame = pd.read_csv(path, sep=sep, nrows=rows, dtype=str, keep_default_na=False,
                        na_values=[""], quoting=csv.QUOTE_MINIMAL)  # fmt: skip
    return Sample(path, _as_text(frame), sep)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), "").astype(str)


def read_columns(sample: Sample, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the whole file (ids and labels: what the config's choices rest on)."""
    if sample.is_parquet:
        frame = pq.read_table(sample.path, columns=columns).to_pandas()
    else:
        frame = pd.read_csv(sample.path, sep=sample.sep, usecols=columns, dtype=str,
                            keep_default_na=False, na_values=[""])  # fmt: skip
    return _as_text(frame)


# -- the interactions file --------------------------------------------------------------------
def guess_interactions(
    frame: pd.DataFrame,
    user_id: str | None = None,
    item_id: str | None = None,
    file: Path | None = None,
) -> list[Guess]:
    """Roles of the interaction columns: ids (``user_id`` / ``item_id`` when given, else by
    name), a timestamp, labels; everything else is ignored (the loader drops it)."""
    columns = [str(c) for c in frame.columns]
    user = user_id or _by_name(columns, USER_NAMES)
    item = item_id or _by_name(columns, ITEM_NAMES, exclude=user)
    guesses = [
        _id_guess(user, "user_id", user_id, columns, USER_NAMES, file),
        _id_guess(item, "item_id", item_id, columns, ITEM_NAMES, file),
    ]
    user, item = guesses[0].column, guesses[1].column
    time = _time_column(frame, [c for c in columns if c not in (user, item)])
    if time is not None:
        guesses.append(time)
    taken = {g.column for g in guesses}
    guesses += [_label(c, frame[c]) for c in columns if c not in taken]
    return guesses


def _by_name(columns: list[str], names: tuple[str, ...], exclude: str | None = None) -> str | None:
    ranked = [(names.index(plain(c)), c) for c in columns if plain(c) in names and c != exclude]
    return min(ranked)[1] if ranked else None


def _id_guess(
    found: str | None,
    role: Role,
    given: str | None,
    columns: list[str],
    names: tuple[str, ...],
    file: Path | None,
) -> Guess:
    """The id column found (or ``given``); none is a `DataError` saying how to name it."""
    if found is None or found not in columns:
        flag, what = f"--{role.replace('_', '-')}", role.split("_")[0]
        raise DataError(
            f"no {what} id column found" if found is None else f"no column {found!r}",
            file=file, field=what,
            expected=f"a column named like {names[0]} or {names[1]}, or name it with "
            f"{flag} COLUMN (columns: {', '.join(columns)})",
        )  # fmt: skip
    why = "given on the command line" if given else f"its name ({found!r})"
    return Guess(found, role, None, why)


def _time_column(frame: pd.DataFrame, columns: list[str]) -> Guess | None:
    """The first column named like a time whose sample parses, else the first column of ISO
    date-times whatever its name."""
    named = sorted((c for c in columns if plain(c) in TIME_NAMES),
                   key=lambda c: TIME_NAMES.index(plain(c)))  # fmt: skip
    for column in named + [c for c in columns if c not in named]:
        values = frame[column][frame[column] != ""]
        if len(values) == 0 or len(values) < len(frame):
            continue
        form = time_form(values)
        if form is not None and (column in named or form == "ISO 8601 date-times"):
            how = "its name and " if column in named else ""
            return Guess(column, "timestamp", None, f"{how}its values: {form}")
    return None


def time_form(values: pd.Series) -> str | None:
    """How a column of texts holds time, as the loader reads it, or None.

    >>> time_form(pd.Series(["881250949", "891717742"])), time_form(pd.Series(["2024-05-01"]))
    ('integers (unix seconds)', 'ISO 8601 date-times')
    """
    if values.str.fullmatch(r"[+-]?[0-9]{1,18}").all():
        big = values.astype(np.int64).abs().max() > 10**11
        return "integers (in milliseconds? only the order matters)" if big else (
            "integers (unix seconds)")  # fmt: skip
    if not values.str.contains(r"^\d{4}-\d{2}-\d{2}", regex=True).all():
        return None
    stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return "ISO 8601 date-times" if stamps.notna().all() else None


def _label(column: str, values: pd.Series) -> Guess:
    """A feedback label when the column holds numbers: 0/1 -> binary, a rating -> regression."""
    name = plain(column)
    if values.eq("").any():
        return Guess(column, "ignored", None, "has empty values (labels may not be missing)")
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        return Guess(column, "ignored", None, "not numbers: interactions keep ids, time, labels "
                     "(item columns go in --items)")  # fmt: skip
    if name.endswith(CODE_SUFFIXES) and name not in RATING_NAMES:
        return Guess(column, "ignored", None, "an id or code, not feedback")
    levels = numbers.nunique()
    if set(numbers.unique()) <= {0.0, 1.0}:
        return Guess(column, "label", "binary", "values 0 / 1 (e.g. a click): a binary label")
    if name in RATING_NAMES or levels <= MAX_RATING_LEVELS:
        how = "its name" if name in RATING_NAMES else f"{levels} distinct values"
        lo, hi = numbers.min(), numbers.max()
        return Guess(column, "label", "regression", f"{how}, numbers {lo:g}..{hi:g}: a rating")
    return Guess(column, "ignored", None, f"numbers with {levels} distinct values, not named like "
                 "a rating; declare it under [data.tabular] labels if it is feedback")  # fmt: skip


# -- users and items tables -------------------------------------------------------------------
def guess_features(
    frame: pd.DataFrame, id_column: str, entity: Literal["users", "items"]
) -> tuple[list[Guess], str]:
    """Kinds of a users / items table's feature columns, and the multi-hot separator they use."""
    if id_column not in frame.columns:
        raise DataError(
            f"no id column {id_column!r}", field=id_column,
            expected=f"the interactions' id column name (columns: {', '.join(frame.columns)})",
        )  # fmt: skip
    sep = next((s for s in MULTI_HOT_SEPS if any(_is_multi_hot(frame[c], s)
                for c in frame.columns if c != id_column)), MULTI_HOT_SEPS[0])  # fmt: skip
    role: Role = "item_id" if entity == "items" else "user_id"
    guesses = [Guess(id_column, role, None, "the id, as in the interactions")]
    for column in frame.columns:
        if column != id_column:
            guesses.append(_feature(str(column), frame[column], sep, entity))
    return guesses, sep


def _feature(column: str, values: pd.Series, sep: str, entity: str) -> Guess:
    filled = values[values != ""]
    name = plain(column)
    if len(filled) == 0:
        return Guess(column, "ignored", None, "empty in the sample")
    numbers = pd.to_numeric(filled, errors="coerce")
    distinct = filled.nunique() / len(filled)
    if numbers.notna().all():
        if name.endswith(CODE_SUFFIXES):
            return Guess(column, "feature", "categorical", "numbers named like a code")
        return Guess(column, "feature", "numeric", f"numbers {numbers.min():g}..{numbers.max():g}")
    if _is_multi_hot(values, sep):
        return Guess(column, "feature", "multi_hot", f"lists of short tokens separated by {sep!r}")
    words = filled.map(lambda v: len(v.split())).mean()
    texty = name in TEXT_NAMES or (words >= TEXT_MIN_WORDS and distinct > 0.5)
    if texty and entity == "users":
        return Guess(column, "ignored", None, "text about users (only item text is encoded)")
    if texty:
        how = "its name" if name in TEXT_NAMES else f"{words:.1f} words a value"
        return Guess(column, "feature", "text", f"{how}: free text for the language model")
    return Guess(column, "feature", "categorical",
                 f"{filled.nunique()} distinct values in {len(filled)} rows")  # fmt: skip


def _is_multi_hot(values: pd.Series, sep: str) -> bool:
    """Cells that are lists: at least 20 % hold ``sep``, and the tokens are short and repeat."""
    filled = values[values != ""]
    if len(filled) == 0 or filled.str.contains(sep, regex=False).mean() < 0.2:
        return False
    tokens = pd.Series([t.strip() for v in filled for t in v.split(sep) if t.strip()])
    if len(tokens) == 0:
        return False
    words = tokens.map(lambda t: len(t.split())).mean()
    return bool(words <= 3 and tokens.nunique() < 0.5 * len(tokens))


# -- sequence files ---------------------------------------------------------------------------
def is_sequence_file(path: Path, lines: int = 20) -> bool:
    """Whether ``path`` reads as "user item item ...": whitespace-separated integers, at least
    two a line, no header."""
    if is_parquet(path) or not path.is_file():
        return False
    head = read_bytes(path)[: 1 << 16].decode("utf-8", errors="replace").split("\n")
    rows = [line.split() for line in head[:lines] if line.strip()]
    if len(head) > lines:
        rows = rows[: lines - 1]  # the last line read may be cut
    return bool(rows) and all(
        len(r) >= 2 and all(re.fullmatch(r"-?[0-9]{1,18}", t) for t in r) for r in rows
    )
