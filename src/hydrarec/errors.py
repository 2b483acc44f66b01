"""Errors hydrarec raises on bad input. Each names what was wrong and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class HydrarecError(Exception):
    """Base class of every error hydrarec raises on purpose."""


class ConfigError(HydrarecError, ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""


class DataError(HydrarecError, ValueError):
    """Bad input data; the message names the file, the line, the field and what was expected.

    >>> str(DataError("rating is not a number", file="u.data", line=3, field="rating",
    ...               expected="a number"))
    "u.data:3: field 'rating': rating is not a number (expected a number)"
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.expected = expected
        where = ""
        if self.file is not None:
            where = self.file + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        what = f"field {field!r}: " if field else ""
        tail = f" (expected {expected})" if expected else ""
        super().__init__(f"{where}{what}{message}{tail}")


@dataclass(frozen=True)
class Where:
    """Where input rows came from, for errors: row ``i`` is line ``first_line + i`` of a file
    with a header, or "row i" (``first_line`` None: a Parquet file, an event log).

    >>> str(Where("new.csv", 2).error(1, "user_id", "missing user id", "an id on every row"))
    "new.csv:3: field 'user_id': missing user id (expected an id on every row)"
    """

    source: str | Path | None
    first_line: int | None = None

    def error(self, row: int | None, field: str, message: str, expected: str) -> DataError:
        if self.first_line is None and row is not None:
            message = f"row {row}: {message}"
        line = None if row is None or self.first_line is None else self.first_line + row
        return DataError(message, file=self.source, line=line, field=field, expected=expected)


class ArgumentError(HydrarecError, TypeError, ValueError):
    """A bad argument to the Python API (a ``k`` that is not a positive integer, one id where a
    list of ids belongs); the message names the argument and what is allowed. A ``TypeError``
    and a ``ValueError``, as Python raises one or the other for such arguments."""


class RunError(HydrarecError, ValueError):
    """A run directory that is missing, incomplete or not a hydrarec run."""


class UnknownIdError(HydrarecError, KeyError):
    """A user or item id that the model does not know."""

    def __init__(self, kind: str, ids: list[object]) -> None:
        self.kind = kind
        self.ids = ids
        shown = ", ".join(repr(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
        super().__init__(f"unknown {kind} id(s): {shown}")

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])

    def __reduce__(self) -> tuple[type, tuple[str, list[object]]]:
        # pickled (e.g. back from the serving model process) with its own arguments
        return (type(self), (self.kind, self.ids))
