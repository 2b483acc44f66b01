"""The report's tables as header + rows of strings, shared by the HTML and Markdown writers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hydrarec.report.collect import ReportData

LOWER_IS_BETTER = ("rmse", "mae", "loss", "logloss")
Table = tuple[list[str], list[list[str]]]


def direction(metric: str) -> str:
    """An arrow saying which way is better for ``metric`` (``task/name``).

    >>> direction("rating/rmse"), direction("retrieval/ndcg@10")
    ('↓', '↑')
    """
    name = metric.rsplit("/", 1)[-1]
    return "↓" if name in LOWER_IS_BETTER else "↑"


def number(value: object, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; missing or NaN as an en dash.

    >>> number(0.123456), number(float("nan")), number(None), number(3)
    ('0.1235', '–', '–', '3')
    """
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def metric_table(data: ReportData) -> Table:
    """Task, metric, valid, test, then each baseline on test."""
    names = list(data.baselines)
    header = ["task", "metric", "valid", "test", *(f"{n} (test)" for n in names)]
    keys = {k for split in data.metrics.values() for k in split}
    rows = []
    for task in data.tasks:
        for key in sorted(k for k in keys if k.split("/", 1)[0] == task):
            rows.append(
                [
                    task,
                    f"{key.split('/', 1)[1]} {direction(key)}",
                    *(number(data.metrics.get(s, {}).get(key)) for s in ("valid", "test")),
                    *(number(data.baselines[n].get(key)) for n in names),
                ]
            )
    return header, rows


def frame_table(df: pd.DataFrame, kinds: dict[str, str], *, predictions: bool) -> Table:
    """A user table as strings. Task columns hold predictions (``predictions``) or labels."""
    rows = []
    for record in df.itertuples(index=False):
        row = []
        for col, value in zip(df.columns, record, strict=True):
            if col in ("item", "title", "split"):
                row.append(str(value))
            else:
                row.append(number(value, _digits(kinds.get(str(col)), predictions)))
        rows.append(row)
    heads = [_heading(str(c), kinds) if predictions else str(c) for c in df.columns]
    return heads, rows


def _digits(kind: str | None, predictions: bool) -> int:
    if not predictions:
        return 1 if kind == "rating" else 0  # labels: 4.0 -> "4.0", a click 1.0 -> "1"
    return 2 if kind == "rating" else 3


def _heading(col: str, kinds: dict[str, str]) -> str:
    kind = kinds.get(col)
    if kind == "binary":
        return f"{col} (p)"
    if kind == "retrieval":
        return f"{col} (dot)"
    return col
