"""What ``hydrarec init`` learns from the user's files: inputs, column guesses and counts.

DATA is one interactions file (CSV, TSV or Parquet), a folder of ``train`` / ``valid`` /
``test`` files split by the user, or a sequence file, one user a line. The header and a sample
give the columns' roles and kinds (``columns.py``); the id and label columns are then read whole,
for the counts the config's choices rest on (users, items, interactions per user) and to check
that every label is present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hydrarec.data.sequences import ATTRIBUTES, load_sequences
from hydrarec.errors import DataError
from hydrarec.scaffold.columns import (
    ITEM_NAMES,
    USER_NAMES,
    Guess,
    Sample,
    guess_features,
    guess_interactions,
    is_sequence_file,
    plain,
    read_columns,
    read_sample,
)

PART_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid",
              "dev": "valid", "test": "test"}  # fmt: skip
SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".gz")


@dataclass
class Facts:
    """Everything the config is chosen from."""

    kind: str  # "tabular" or "sequences"
    files: dict[str, Path]  # "interactions" or "train" / "valid" / "test"; "sequences"
    items: Path | None = None
    users: Path | None = None
    sep: str = ","
    multi_hot_sep: str = "|"
    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # column -> regression / binary
    label_median: dict[str, float] = field(default_factory=dict)
    item_features: dict[str, str] = field(default_factory=dict)  # column -> kind
    user_features: dict[str, str] = field(default_factory=dict)
    text_fallback: bool = False  # some item has no text: the template adds the id
    n_users: int = 0
    n_items: int = 0
    n_rows: int = 0
    per_user: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    interaction_items: set[str] = field(default_factory=set)  # item ids of the interactions
    guesses: dict[str, list[Guess]] = field(default_factory=dict)  # file -> its columns

    @property
    def time_order(self) -> bool:
        """A sequence file's line order, or a timestamp column."""
        return self.kind == "sequences" or self.timestamp is not None


def read_facts(
    data: Path,
    items: Path | None = None,
    users: Path | None = None,
    user_id: str | None = None,
    item_id: str | None = None,
) -> Facts:
    """Inspect DATA (a file, a folder of split files, or a sequence file) and the tables."""
    data = data.expanduser().resolve()
    items = items.expanduser().resolve() if items else None
    users = users.expanduser().resolve() if users else None
    if data.is_file() and is_sequence_file(data):
        return _sequence_facts(data, items, users)
    files = split_files(data) if data.is_dir() else {"interactions": data}
    facts = Facts("tabular", files, items, users)
    first = read_sample(next(iter(files.values())))
    facts.sep = first.sep
    guesses = guess_interactions(first.frame, user_id, item_id, file=first.path)
    facts.user_id = next(g.column for g in guesses if g.role == "user_id")
    facts.item_id = next(g.column for g in guesses if g.role == "item_id")
    facts.timestamp = next((g.column for g in guesses if g.role == "timestamp"), None)
    facts.labels = {g.column: str(g.kind) for g in guesses if g.role == "label"}
    guesses = _count(facts, first, guesses)
    facts.guesses[_shown(first.path)] = guesses
    if items is not None:
        _table(facts, items, "items")
    if users is not None:
        _table(facts, users, "users")
    return facts


def split_files(folder: Path) -> dict[str, Path]:
    """``train`` / ``valid`` / ``test`` files of a folder, by their names' first word."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = path.name.split(".", 1)[0].lower()
        if path.is_file() and stem in PART_NAMES and path.name.lower().endswith(SUFFIXES):
            found.setdefault(PART_NAMES[stem], path)
    if "train" not in found or "test" not in found:
        raise DataError(
            "no train and test files", file=folder,
            expected="a file (e.g. ratings.csv), or a folder with train.csv and test.csv "
            "(valid.csv optional; .tsv and .parquet too)",
        )  # fmt: skip
    return {p: found[p] for p in ("train", "valid", "test") if p in found}


def _count(facts: Facts, first: Sample, guesses: list[Guess]) -> list[Guess]:
    """Read ids and labels of every file whole: counts, and labels that turn out incomplete."""
    columns = [facts.user_id, facts.item_id, *facts.labels]
    frames = [read_columns(first if p == first.path else read_sample(p, 1), columns)
              for p in facts.files.values()]  # fmt: skip
    whole = pd.concat(frames, ignore_index=True)
    for label in list(facts.labels):
        empty = whole[label].eq("")
        if empty.any():
            del facts.labels[label]
            why = (
                f"empty at data row {int(np.flatnonzero(empty)[0]) + 1} (labels may not be missing)"
            )
            guesses = [Guess(g.column, "ignored", None, why) if g.column == label else g
                       for g in guesses]  # fmt: skip
        else:
            facts.label_median[label] = float(pd.to_numeric(whole[label]).median())
    facts.n_rows = len(whole)
    facts.n_users = int(whole[facts.user_id].nunique())
    facts.n_items = int(whole[facts.item_id].nunique())
    facts.per_user = whole.groupby(facts.user_id).size().to_numpy()
    facts.interaction_items = set(whole[facts.item_id])
    return guesses


def _table(facts: Facts, path: Path, entity: str) -> None:
    """Feature kinds of a users / items table, whose id column must be named as in the
    interactions (the loader joins on one name)."""
    sample = read_sample(path)
    id_column = facts.item_id if entity == "items" else facts.user_id
    if id_column not in sample.frame.columns:
        names = ITEM_NAMES if entity == "items" else USER_NAMES
        other = next((c for c in sample.frame.columns if plain(c) in names), None)
        fix = f"rename its column {other!r} to {id_column!r}" if other else (
            f"add the id column {id_column!r}")  # fmt: skip
        raise DataError(
            f"no column {id_column!r}, the interactions' {entity[:-1]} id", file=path,
            line=1, field=id_column, expected=f"the same id column name: {fix}",
        )  # fmt: skip
    guesses, sep = guess_features(sample.frame, id_column, entity)  # type: ignore[arg-type]
    kinds = {g.column: str(g.kind) for g in guesses if g.role == "feature"}
    if "multi_hot" in kinds.values():
        facts.multi_hot_sep = sep
    if entity == "items":
        facts.item_features = kinds
        facts.text_fallback = _text_missing(facts, sample, kinds)
    else:
        facts.user_features = kinds
    facts.guesses[_shown(path)] = guesses


def _text_missing(facts: Facts, sample: Sample, kinds: dict[str, str]) -> bool:
    """Whether some item of the interactions has no text in the items table: it would have an
    empty text, which the text encoder refuses (then the template writes the item id too)."""
    text = [c for c, k in kinds.items() if k == "text"]
    if not text:
        return False
    table = read_columns(sample, [facts.item_id, *text])
    has_text = (table[text] != "").any(axis=1)
    described = set(table.loc[has_text, facts.item_id])
    return bool(facts.interaction_items - described)


def _sequence_facts(data: Path, items: Path | None, users: Path | None) -> Facts:
    if users is not None:
        raise DataError(
            "a sequence file takes no users table", file=users,
            expected="DATA as CSV / Parquet (user_id,item_id,...) to use user features",
        )  # fmt: skip
    if items is not None and items.suffix.lower() != ".json":
        raise DataError(
            "a sequence file takes item attributes as JSON ({item: [attribute ids]})", file=items,
            expected="a .json file; for item text, write the interactions as CSV "
            "(user_id,item_id, one row each) and pass the items table with --items",
        )  # fmt: skip
    ds = load_sequences(data, items)
    facts = Facts("sequences", {"sequences": data}, items=items)
    inter = ds.interactions
    facts.n_rows, facts.n_users, facts.n_items = len(inter), ds.n_users, ds.n_items
    facts.per_user = np.bincount(inter["user_idx"].to_numpy())
    if items is not None:
        facts.item_features = {ATTRIBUTES: "multi_hot"}
    facts.guesses[_shown(data)] = [
        Guess("field 1", "user_id", None, "a sequence file: the user, then the items"),
        Guess("fields 2..", "item_id", None, "in time order, oldest first (the line's order)"),
    ] + ([Guess(ATTRIBUTES, "feature", "multi_hot", "the JSON's attribute ids")] if items else [])
    return facts


def _shown(path: Path) -> str:
    return path.name
