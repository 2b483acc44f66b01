"""The temporal protocol's files for ``bench_online.py temporal`` (issue 25): what each system
trains on, the events between T1 and T2, and the users and items evaluated after T2.

Derived files are written under the work folder (``runs/`` is git-ignored): MovieLens files are
never copied into the repository. Each dataset is cut in three by time:

- **MovieLens-100K** (``u.data``'s timestamps, read through hydrarec's MovieLens loader): T1 and
  T2 are quantiles of every rating's timestamp; before T1 (``ts < T1``), between (``T1 <= ts <
  T2``), after T2 (``ts >= T2``). The own-data path (``dataset = "tabular"``) reads them, with the
  users' features (age, gender, occupation, zip region) and the items' (year, genres multi-hot)
  from ``u.user`` / ``u.item``, each users / items table holding the users / items of its
  interactions (a model knows whom and what it was trained on; ``all_users``: every user's row,
  as if users' features were known at sign-up).
- **Amazon Beauty** (S3-Rec's ``Beauty.txt``, no timestamps): position is time. Per user, the
  last item is after T2, the one before it is the T1..T2 event, the rest is before T1; the
  sequence files (``dataset = "sequences"``) and attribute files are cut accordingly, and the
  events get synthetic increasing timestamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.config import load_config
from hydrarec.data.registry import load_dataset

ROOT = Path(__file__).resolve().parents[1]
ML100K_CONFIG = ROOT / "configs" / "ml100k_loo.toml"
BEAUTY_CONFIG = ROOT / "configs" / "beauty.toml"
SYNTHETIC_T0 = 1_600_000_000  # Beauty's synthetic event times: 2020-09-13 + position seconds


@dataclass
class Protocol:
    """One dataset cut at T1 and T2: the base config, the --set overrides that point it at each
    training set, the events, and what is evaluated after T2."""

    name: str
    config: Path
    sets_t1: list[str]  # train on before T1: systems (a), (b)
    sets_t2: list[str]  # train on before T2: system (d)
    between: Path  # the T1..T2 interactions, Parquet (user_id, item_id, timestamp[, rating])
    new_items: Path  # the features of the items first seen between T1 and T2 (update --items)
    events: list[dict[str, Any]]  # the same, as POST /events bodies' events
    targets: dict[Any, Any]  # user -> their first item after T2
    after: dict[Any, set[Any]]  # user -> every item after T2
    history_users: set[Any]  # users with an interaction before T2
    note: str  # how it was cut, for the report

    @property
    def counts(self) -> str:
        return (
            f"{len(self.events):,} events between T1 and T2; {len(self.targets):,} users with "
            f"an interaction after T2"
        )


def movielens(folder: Path, q1: float, q2: float, all_users: bool = False) -> Protocol:
    """MovieLens-100K cut at the ``q1`` and ``q2`` quantiles of the ratings' timestamps."""
    ds = load_dataset(load_config(ML100K_CONFIG).data)
    inter = ds.interactions[["user_id", "item_id", "timestamp", "rating"]]
    t1, t2 = (float(x) for x in inter["timestamp"].quantile([q1, q2]))
    before_t1 = inter[inter["timestamp"] < t1]
    between = inter[(inter["timestamp"] >= t1) & (inter["timestamp"] < t2)]
    after = inter[inter["timestamp"] >= t2]
    folder.mkdir(parents=True, exist_ok=True)
    items = ds.items[["item_id", "year", "genres"]].copy()
    items["genres"] = ["|".join(g) for g in items["genres"]]
    sets = {}
    for name, part in (("t1", before_t1), ("t2", inter[inter["timestamp"] < t2])):
        part.to_parquet(folder / f"before_{name}.parquet", index=False)
        items[items["item_id"].isin(part["item_id"])].to_csv(
            folder / f"items_{name}.csv", index=False
        )
        users = ds.users if all_users else ds.users[ds.users["user_id"].isin(part["user_id"])]
        users.to_csv(folder / f"users_{name}.csv", index=False)
        sets[name] = _tabular_sets(folder, name)
    between = between.sort_values("timestamp", kind="stable")  # logged in time order
    between.to_parquet(folder / "between.parquet", index=False)
    new = items["item_id"].isin(between["item_id"]) & ~items["item_id"].isin(before_t1["item_id"])
    items[new].to_csv(folder / "new_items.csv", index=False)
    events = [
        {
            "user_id": int(u),
            "item_id": int(i),
            "timestamp": int(t),
            "rating": float(r),
            "event_id": f"{u}-{i}-{t}",
        }
        for u, i, t, r in between.itertuples(index=False)
    ]
    note = (
        f"MovieLens-100K by timestamp: T1 = {q1:.2f} quantile ({_day(t1)}), T2 = {q2:.2f} "
        f"quantile ({_day(t2)}); before T1 {len(before_t1):,} ratings, between "
        f"{len(between):,}, after T2 {len(after):,}; target = each user's first rating after T2 "
        f"(ties in time: u.data's row order); recall@10 over all their ratings after T2; users "
        f"table: {'every user' if all_users else 'the users of the training interactions'}"
    )
    return Protocol(
        "ml100k",
        ML100K_CONFIG,
        sets["t1"],
        sets["t2"],
        folder / "between.parquet",
        folder / "new_items.csv",
        events,
        *_after_t2(after),
        {_plain(u) for u in inter.loc[inter["timestamp"] < t2, "user_id"].unique()},
        note,
    )


def _tabular_sets(folder: Path, name: str) -> list[str]:
    """ml100k_loo.toml's [data] pointed at the derived files (its model and schedule kept)."""
    return [
        "data.dataset=tabular",
        f"data.tabular.interactions={folder / f'before_{name}.parquet'}",
        f"data.tabular.users={folder / f'users_{name}.csv'}",
        f"data.tabular.items={folder / f'items_{name}.csv'}",
        'data.tabular.labels={rating = "regression"}',
        'data.tabular.user_features={age = "numeric", gender = "categorical", '
        'occupation = "categorical", zip_region = "categorical"}',
        'data.tabular.item_features={year = "numeric", genres = "multi_hot"}',
    ]


def beauty(folder: Path, data_dir: Path) -> Protocol:
    """Amazon Beauty by position: last item after T2, the one before it the event, the rest
    before T1."""
    src = data_dir / "amazon-beauty"
    lines = [ln.split() for ln in (src / "Beauty.txt").read_text().splitlines() if ln.strip()]
    attributes = json.loads((src / "Beauty_item2attributes.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    sets = {}
    for name, cut in (("t1", -2), ("t2", -1)):
        kept = [(ln[0], ln[1:cut]) for ln in lines if len(ln[1:cut]) > 0]
        text = "".join(f"{u} {' '.join(items)}\n" for u, items in kept)
        (folder / f"before_{name}.txt").write_text(text)
        present = {i for _, items in kept for i in items}
        # an attribute of an item no line holds is an error (docs/data.md): only theirs
        attr = {i: a for i, a in attributes.items() if i in present}
        (folder / f"attributes_{name}.json").write_text(json.dumps(attr))
        sets[name] = [
            f"data.sequences.file={folder / f'before_{name}.txt'}",
            f"data.sequences.item_attributes={folder / f'attributes_{name}.json'}",
        ]
    rows = [(int(ln[0]), int(ln[-2]), SYNTHETIC_T0 + len(ln) - 3) for ln in lines if len(ln) >= 3]
    between = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    between.to_parquet(folder / "between.parquet", index=False)
    before = {int(i) for ln in lines for i in ln[1:-2]}
    new = sorted({i for _, i, _ in rows} - before)
    pd.DataFrame(
        {"item_id": new, "attributes": [[str(a) for a in attributes.get(str(i), [])] for i in new]}
    ).to_parquet(folder / "new_items.parquet", index=False)
    events = [
        {"user_id": u, "item_id": i, "timestamp": t, "event_id": f"{u}-{i}-{t}"} for u, i, t in rows
    ]
    after = pd.DataFrame(
        [(int(ln[0]), int(ln[-1]), 0) for ln in lines if len(ln) >= 2],
        columns=["user_id", "item_id", "timestamp"],
    )
    n1 = sum(max(len(ln) - 3, 0) for ln in lines)
    note = (
        f"Amazon Beauty by position: per user the last item = after T2 (the target), the one "
        f"before = the T1..T2 event (synthetic timestamps), the rest = before T1 "
        f"({n1:,} interactions, {len(rows):,} events, {len(after):,} targets)"
    )
    return Protocol(
        "beauty",
        BEAUTY_CONFIG,
        sets["t1"],
        sets["t2"],
        folder / "between.parquet",
        folder / "new_items.parquet",
        events,
        *_after_t2(after),
        {int(ln[0]) for ln in lines if len(ln) >= 3},
        note,
    )


def _after_t2(after: pd.DataFrame) -> tuple[dict[Any, Any], dict[Any, set[Any]]]:
    """Each user's first item after T2 (stable in time: file order breaks ties) and all of them."""
    ordered = after.sort_values("timestamp", kind="stable")
    first = ordered.groupby("user_id", sort=True)["item_id"].first()
    every = ordered.groupby("user_id", sort=True)["item_id"].apply(set)
    return {_plain(u): _plain(i) for u, i in first.items()}, {
        _plain(u): {_plain(i) for i in s} for u, s in every.items()
    }


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _day(ts: float) -> str:
    return pd.Timestamp(ts, unit="s").strftime("%Y-%m-%d")
