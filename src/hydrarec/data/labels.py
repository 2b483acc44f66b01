"""Task labels from interaction columns: a column as it is, or a rule such as ``rating >= 4``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.config import LabelledTask, TaskConfig
from hydrarec.errors import ConfigError, DataError

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+)\s*$")


def parse_rule(rule: str) -> tuple[str, str, float]:
    """``"rating >= 4"`` -> ``("rating", ">=", 4.0)``.

    >>> parse_rule("rating >= 4")
    ('rating', '>=', 4.0)
    """
    m = _RULE.match(rule)
    if not m:
        raise ConfigError(
            f"rule {rule!r}: expected '<column> <op> <number>' with op one of {', '.join(_OPS)}"
        )
    return m.group(1), m.group(2), float(m.group(3))


def source_column(task: TaskConfig) -> str | None:
    """The interaction column a task reads (None for a task without labels)."""
    if isinstance(task, LabelledTask):
        return task.column if task.column else parse_rule(task.label_rule())[0]
    return None


def check_columns(tasks: list[TaskConfig], columns: list[str]) -> None:
    """Every task's column must exist in the interactions."""
    for t in tasks:
        col = source_column(t)
        if col is not None and col not in columns:
            allowed = ", ".join(c for c in columns if c not in ("user_idx", "item_idx")) or "none"
            raise ConfigError(
                f"task {t.name!r} reads column {col!r}, which the data lacks "
                f"(interaction columns: {allowed})"
            )


def task_labels(frame: pd.DataFrame, tasks: list[TaskConfig]) -> dict[str, np.ndarray]:
    """float32 label per pointwise task (NaN where missing), keyed by task name."""
    check_columns(tasks, list(frame.columns))
    out: dict[str, np.ndarray] = {}
    for t in tasks:
        if not isinstance(t, LabelledTask):
            continue
        if t.column:
            values = frame[t.column].to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            col, op, threshold = parse_rule(t.label_rule())
            raw = frame[col].to_numpy(dtype=np.float32, na_value=np.nan)
            values = np.where(np.isnan(raw), np.nan, _OPS[op](raw, threshold)).astype(np.float32)
        _check_values(t, values)
        out[t.name] = values
    return out


def _check_values(task: LabelledTask, values: np.ndarray) -> None:
    """Every label one of the task kind's ``label_values`` (any label when it has none)."""
    if task.label_values is None:
        return
    bad = ~np.isnan(values) & ~np.isin(values, task.label_values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = ", ".join(f"{v:g}" for v in task.label_values)
        raise DataError(
            f"task {task.name!r}: label {values[row]!r} at interaction row {row}",
            field=task.column,
            expected=f"a {task.kind} label in {{{shown}}}",
        )


def label_stats(labels: dict[str, np.ndarray]) -> dict[str, tuple[float, float, float]]:
    """(min, max, mean) of each task's labels over the given (training) rows."""
    stats = {}
    for name, v in labels.items():
        v = v[~np.isnan(v)]
        stats[name] = (float(v.min()), float(v.max()), float(v.mean())) if len(v) else (0, 1, 0)
    return stats
