"""``export_events``: the whole event log as one Parquet table, for a full retrain
(``hydrarec events export LOG --out events.parquet``).

Columns: ``user_id``, ``item_id``, ``timestamp``, one column per feedback name seen in the log
(missing values empty), then ``event_id`` and ``received``; rows in arrival order. Ids are stored
as text: a column whose every value is an integer in its decimal spelling (``"42"``, not
``"042"``) is written as int64, so MovieLens-style logs train like the original files; the
timestamp is int64 when every value is a whole second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hydrarec.io.atomic import atomic_path
from hydrarec.online.store import COLUMNS, EventStoreError, is_postgres, open_store
from hydrarec.recommend.queries import DECIMAL


def export_events(target: str | Path, out: str | Path) -> int:
    """Write the log at ``target`` to the Parquet file ``out`` (atomically); how many events."""
    table = read_events(target)
    with atomic_path(Path(out)) as tmp:
        table.to_parquet(tmp, index=False)
    return len(table)


def read_events(target: str | Path) -> pd.DataFrame:
    """Every event of the log at ``target`` as the exported table (``hydrarec update --events``
    reads it so)."""
    if not is_postgres(target) and not Path(target).is_file():
        raise EventStoreError(f"no event log at {target} (the file does not exist)")
    store = open_store(target)
    try:
        frames = [pd.DataFrame(rows, columns=list(COLUMNS)) for rows in store.rows()]
    finally:
        store.close()
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    return events_table(events)


def events_table(events: pd.DataFrame) -> pd.DataFrame:
    """Stored rows (``COLUMNS``) as the exported table (see the module docstring)."""
    feedback = pd.DataFrame(
        [json.loads(f) if isinstance(f, str) else {} for f in events["feedback"]],
        index=events.index,
    )
    table = pd.DataFrame({"user_id": _ids(events["user_id"]), "item_id": _ids(events["item_id"])})
    table["timestamp"] = _seconds(events["ts"])
    for column in sorted(feedback.columns):
        table[column] = feedback[column].astype("float64")
    table["event_id"] = events["event_id"].astype(object)
    table["received"] = events["received"].astype("float64")
    return table


def _ids(ids: pd.Series) -> pd.Series:
    text = ids.astype(str)
    if len(text) and text.map(lambda s: DECIMAL.fullmatch(s) is not None).all():
        return text.astype("int64")
    return text.astype(object)


def _seconds(ts: pd.Series) -> pd.Series:
    values = ts.astype("float64")
    if len(values) and (values == values.round()).all():
        return values.astype("int64")
    return values
