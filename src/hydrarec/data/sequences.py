"""Sequence files, "one user a line", as S3-Rec, CL4SRec, DuoRec and ICLRec ship their data.

Each line is ``user item item ...``: integer ids separated by whitespace (or ``sep``), the items in
time order, oldest first. There are no timestamps: a user's position in the line is the time, and
the interactions are stored in file order, which every split and history reads as time order
(``data/splits.py``: "without a timestamp column file order is the time").

An optional attribute file (S3-Rec's ``*_item2attributes.json``) maps item ids to lists of
attribute ids, ``{"12": [3, 41], ...}``; they become the item multi-hot feature ``attributes``
(an item of the sequences without attributes gets an empty list).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "s.txt").write_text("1 10 11 12\\n2 11 13\\n")
>>> ds = load_sequences(d / "s.txt")
>>> ds.interactions[["user_id", "item_id"]].values.tolist()
[[1, 10], [1, 11], [1, 12], [2, 11], [2, 13]]
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from hydrarec.data.dataset import Dataset
from hydrarec.data.reading import reading
from hydrarec.data.schema import ITEM_ID, USER_ID, Column, Kind, Schema
from hydrarec.errors import DataError
from hydrarec.io.progress import Progress

ATTRIBUTES = "attributes"  # the item multi-hot feature read from ``item_attributes``
_INT = re.compile(r"-?[0-9]{1,18}")
LINES_A_STEP = 1 << 16  # lines a progress step


def load_sequences(
    file: str | Path,
    item_attributes: str | Path | None = None,
    sep: str | None = None,
    name: str = "sequences",
    progress: Progress | None = None,
) -> Dataset:
    """The interactions of every line of ``file`` (and the items' attributes, when given); a
    read that lasts shows the lines read (``data.reading``; ``progress`` default: the bar open
    around the call)."""
    users, items = _read_lines(Path(file), sep, progress)
    inter = pd.DataFrame({USER_ID: users, ITEM_ID: items})
    schema = Schema(users=[Column(USER_ID, Kind.ID)], items=[Column(ITEM_ID, Kind.ID)])
    table = None
    if item_attributes is not None:
        table = _read_attributes(Path(item_attributes), pd.unique(items))
        schema.items.append(Column(ATTRIBUTES, Kind.MULTI_HOT))
    return Dataset.build(name, inter, schema, items=table)


def _read_lines(
    file: Path, sep: str | None, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of every interaction, in file order; bad lines are DataErrors."""
    if not file.is_file():
        raise DataError("file not found", file=file, expected="a sequence file, one user a line")
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"not UTF-8 text ({e.reason} at byte {e.start})", file=file, line=bad_line
        ) from None
    users: list[int] = []
    counts: list[int] = []
    items: list[str] = []
    seen: dict[int, int] = {}
    lines = text.split("\n")  # as editors count (not \x0c)
    with reading(file, len(lines), "lines", progress) as bar:
        for number, line in enumerate(lines, start=1):
            if number % LINES_A_STEP == 0:
                bar.advance(n=LINES_A_STEP)
            _read_line(line, number, file, sep, seen, users, counts, items)
        bar.advance(n=len(lines) - bar.completed)
    if not users:
        raise DataError("no user lines", file=file, expected="'user item item ...' lines")
    return np.repeat(np.asarray(users, np.int64), counts), np.asarray(items, dtype=np.int64)


def _read_line(
    line: str,
    number: int,
    file: Path,
    sep: str | None,
    seen: dict[int, int],
    users: list[int],
    counts: list[int],
    items: list[str],
) -> None:
    """Append the user and items of line ``number`` to ``users``, ``counts`` and ``items``."""
    tokens = line.split(sep) if sep else line.split()
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        return  # blank lines (e.g. a trailing one) carry nothing
    bad = next((t for t in tokens if not _INT.fullmatch(t)), None)
    if bad is not None:
        field = "user" if bad == tokens[0] else "item"
        raise DataError(
            f"{bad[:40]!r} is not an integer id", file=file, line=number, field=field,
            expected="'user item item ...' with integer ids",
        )  # fmt: skip
    if len(tokens) < 2:
        raise DataError(
            f"user {tokens[0]} has no items", file=file, line=number,
            expected="'user item item ...' with at least one item",
        )  # fmt: skip
    user = int(tokens[0])
    if user in seen:
        raise DataError(
            f"user {user} already has a line (line {seen[user]})", file=file, line=number,
            field="user", expected="one line per user",
        )  # fmt: skip
    seen[user] = number
    users.append(user)
    counts.append(len(tokens) - 1)
    items.extend(tokens[1:])


def _read_attributes(file: Path, known: np.ndarray) -> pd.DataFrame:
    """The items table: every item of ``known`` with its attribute tokens (strings)."""
    if not file.is_file():
        raise DataError("file not found", file=file, expected="a JSON object item -> attributes")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        line = getattr(e, "lineno", None)
        raise DataError(f"not valid JSON: {e}", file=file, line=line) from None
    if not isinstance(raw, dict):
        raise DataError(f"a JSON {type(raw).__name__}", file=file, expected="an object")
    known_set = set(known.tolist())
    attrs: dict[int, list[str]] = {}
    for key, values in raw.items():
        if not _INT.fullmatch(str(key).strip()):
            raise DataError(f"item key {key!r} is not an integer id", file=file, field="item")
        if not isinstance(values, list) or not all(_is_id(v) for v in values):
            raise DataError(
                f"item {key}: attributes {str(values)[:60]}", file=file, field=str(key),
                expected="a list of attribute ids (integers or strings)",
            )  # fmt: skip
        item = int(key)
        if item not in known_set:
            raise DataError(
                f"item {item} is in no sequence", file=file, field=str(key),
                expected="attributes only of items that the sequence file has",
            )  # fmt: skip
        attrs[item] = [str(v) for v in values]
    return pd.DataFrame({ITEM_ID: known, ATTRIBUTES: [attrs.get(int(i), []) for i in known]})


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and bool(value.strip())
    )
