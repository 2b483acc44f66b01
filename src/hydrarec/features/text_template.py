"""Item text from a template over item columns: ``"{title} ({year}). Genres: {genres}"``.

Missing cells are empty, list cells (genres) are joined by ``LIST_SEP``, whole floats lose their
``.0``; a template naming a column the items table lacks, or an item whose text comes out empty,
is a ``DataError`` naming the file, line and column.
"""

from __future__ import annotations

import math
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.errors import ConfigError, DataError

LIST_SEP = ", "  # list cells (e.g. genres) in a template


def template_columns(template: str) -> list[str]:
    """The item columns a template reads, in order of first use.

    >>> template_columns("{title} ({year}). Genres: {genres}; {title}")
    ['title', 'year', 'genres']
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"model.text.template: {e} in {template!r}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        base = field.split(".", 1)[0].split("[", 1)[0]
        if not base or base.isdigit():
            raise ConfigError(
                f"model.text.template: every field must name an item column, got {{{field}}} "
                f"in {template!r}"
            )
        if base not in names:
            names.append(base)
    return names


def cell_text(value: Any) -> Any:
    """A cell as a template sees it: missing -> "", lists joined by ", ", 1995.0 -> 1995.

    >>> cell_text(["Animation", "Comedy"]), cell_text(float("nan")), cell_text(1995.0)
    ('Animation, Comedy', '', 1995)
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        return LIST_SEP.join(str(cell_text(v)) for v in value if cell_text(v) != "")
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def render_texts(
    items: pd.DataFrame,
    template: str,
    *,
    source: str | Path | None = None,
    first_line: int | None = None,
    id_column: str = "item_id",
) -> list[str]:
    """One text per row of ``items`` from ``template`` (see ``cell_text``).

    Errors name the missing column, or the row (``first_line + row`` when the rows come from a
    file, e.g. 2 for a CSV with a header) and item whose text is empty.

    >>> df = pd.DataFrame({"title": ["Heat"], "year": [1995.0], "genres": [["Action", "Crime"]]})
    >>> render_texts(df, "{title} ({year}). Genres: {genres}")
    ['Heat (1995). Genres: Action, Crime']
    """
    columns = template_columns(template)
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise DataError(
            f"model.text.template {template!r} reads column(s) {missing}, which the items table "
            f"lacks (columns: {list(items.columns)})",
            file=source, field=missing[0], expected="every column the template names",
        )  # fmt: skip
    texts = []
    for row, values in enumerate(zip(*(items[c].tolist() for c in columns), strict=True)):
        cells = {c: cell_text(v) for c, v in zip(columns, values, strict=True)}
        text = _format(template, cells).strip()
        if not text or all(str(v).strip() == "" for v in cells.values()):
            where = f"row {row}" if first_line is None else None
            item = cell_text(items[id_column].iloc[row]) if id_column in items.columns else "?"
            raise DataError(
                f"item {item!r}{' (' + where + ')' if where else ''} has empty text: "
                f"{', '.join(columns)} are all missing or blank",
                file=source, line=None if first_line is None else first_line + row,
                field=columns[0] if columns else None, expected="some text for every item",
            )  # fmt: skip
        texts.append(text)
    return texts


def _format(template: str, cells: dict[str, Any]) -> str:
    try:
        return template.format_map(cells)
    except (ValueError, TypeError, IndexError, AttributeError) as e:
        raise ConfigError(f"model.text.template {template!r}: {e}") from None
