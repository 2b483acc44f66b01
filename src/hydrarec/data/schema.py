"""The schema: what every column of a dataset is.

Interactions always carry ``user_id`` and ``item_id`` (raw ids, as in the data) and optionally
``timestamp`` (int seconds); every other interaction column is a feedback label. The users and items
tables carry the entity id plus side features of the kinds below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"


class Kind(str, Enum):
    """The kind of a column."""

    ID = "id"
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    MULTI_HOT = "multi_hot"  # a list of tokens per row (e.g. genres)
    TEXT = "text"
    TIMESTAMP = "timestamp"
    REGRESSION = "regression"  # a real-valued feedback label (e.g. rating)
    BINARY = "binary"  # a {0, 1} feedback label (e.g. click)


LABEL_KINDS = (Kind.REGRESSION, Kind.BINARY)


@dataclass(frozen=True)
class Column:
    """One column: its name and kind. ``sep`` splits a multi-hot string column into tokens."""

    name: str
    kind: Kind
    sep: str | None = None


@dataclass
class Schema:
    """Declares the columns of the interactions, users and items tables."""

    interactions: list[Column] = field(default_factory=list)
    users: list[Column] = field(default_factory=list)
    items: list[Column] = field(default_factory=list)

    def labels(self) -> list[Column]:
        """The feedback columns of the interactions (regression or binary)."""
        return [c for c in self.interactions if c.kind in LABEL_KINDS]

    def column(self, table: str, name: str) -> Column:
        """The column ``name`` of ``table`` ('interactions', 'users' or 'items')."""
        for c in getattr(self, table):
            if c.name == name:
                return c
        known = ", ".join(c.name for c in getattr(self, table)) or "none"
        raise KeyError(f"no column {name!r} in the {table} table (columns: {known})")

    def features(self, table: str) -> list[Column]:
        """Side-feature columns of 'users' or 'items' (everything but the id)."""
        return [c for c in getattr(self, table) if c.kind is not Kind.ID]

    def to_dict(self) -> dict[str, list[dict[str, str | None]]]:
        return {
            t: [{"name": c.name, "kind": c.kind.value, "sep": c.sep} for c in getattr(self, t)]
            for t in ("interactions", "users", "items")
        }

    @classmethod
    def from_dict(cls, d: dict[str, list[dict[str, str | None]]]) -> Schema:
        def cols(rows: list[dict[str, str | None]]) -> list[Column]:
            return [Column(str(r["name"]), Kind(r["kind"]), r.get("sep")) for r in rows]

        return cls(**{t: cols(d.get(t, [])) for t in ("interactions", "users", "items")})
