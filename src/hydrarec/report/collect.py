"""Everything a report shows, gathered from a run directory into plain data (no plotting here).

The HTML and Markdown writers render the same ``ReportData``; ``plots`` draws its figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hydrarec.config import TASK_KINDS
from hydrarec.io.atomic import read_json
from hydrarec.recommend.recommender import Recommender
from hydrarec.report.baselines import baselines, item_counts

HISTORY_SHOWN = 10  # most recent interactions shown per sample user
TOP_K = 10
N_SAMPLE_USERS = 3
CATEGORY_COLUMNS = ("genres", "genre", "category", "categories")  # preferred, in order
MAX_CATEGORIES = 10  # the rest are drawn as "other"


@dataclass
class SampleUser:
    user_id: Any
    history: pd.DataFrame  # newest first: item, title, split, label columns
    recommendations: pd.DataFrame  # rank, item, title, score, one column per task


@dataclass
class ItemMap:
    coords: np.ndarray  # (I, 2) PCA of the item vectors
    explained: tuple[float, float]  # share of variance of each axis
    category: np.ndarray | None  # (I,) label of each item's colour; None: one colour
    category_name: str | None
    labelled: np.ndarray  # catalogue indices of the items named on the map
    names: list[str]  # their titles (or ids)


@dataclass
class ReportData:
    path: Path
    title: str
    summary: dict[str, str]
    tasks: dict[str, str]  # name -> kind, in config order
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, float]]  # split -> {task/metric: value}
    baselines: dict[str, dict[str, float]]  # name -> {task/metric: value} on test
    item_map: ItemMap
    best_epoch: int | None = None  # the epoch whose weights the run kept
    score_note: str = ""  # what the recommendations' "score" column is
    users: list[SampleUser] = field(default_factory=list)


def collect(run_dir: str | Path) -> ReportData:
    """Load the run at ``run_dir`` and gather the report's contents."""
    rec = Recommender.load(run_dir)
    run = rec.run
    meta = run.meta
    path = run.run.path
    metrics = read_json(run.run.metrics) if run.run.metrics.is_file() else {}
    return ReportData(
        path=path,
        title=f"{meta['dataset']} · {run.config.model.architecture.name} · "
        f"{', '.join(meta['tasks'])}",
        summary=_summary(rec, metrics.get("train", {})),
        tasks=dict(meta["tasks"]),
        history=read_history(run.run.history),
        metrics={k: v for k, v in metrics.items() if k in ("valid", "test")},
        baselines=baselines(run),
        item_map=item_map(rec),
        best_epoch=metrics.get("train", {}).get("best_epoch"),
        score_note=score_note(rec),
        users=[sample_user(rec, u) for u in pick_users(rec)],
    )


def read_history(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``history.jsonl`` (empty when missing)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _summary(rec: Recommender, train: dict[str, Any]) -> dict[str, str]:
    meta, cfg = rec.run.meta, rec.config
    sizes = meta.get("split_sizes", {})
    out = {
        "dataset": f"{meta['dataset']}: {meta['n_users']:,} users, {meta['n_items']:,} items",
        "split": f"{cfg.data.split.kind}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()),
        "tasks": ", ".join(f"{n} ({k})" for n, k in meta["tasks"].items()),
        "architecture": f"{cfg.model.architecture.name}, dim {cfg.model.dim}, "
        + (f"ensemble of {cfg.model.ensemble}, " if cfg.model.ensemble > 1 else "")
        + f"{meta['parameters']:,} parameters",
        "joint loss": cfg.loss.weighting,
    }
    if train:
        out["training"] = (
            f"{train.get('epochs', '?')} epochs (best {train.get('best_epoch', '?')}) "
            f"in {float(train.get('seconds', 0.0)):.1f} s"
        )
    out["created"] = f"{meta.get('created', '?')}, hydrarec {meta.get('hydrarec_version', '?')}"
    return out


def score_note(rec: Recommender) -> str:
    """What ranks the recommendations: the user-item dot product, or the configured blend."""
    if not rec.blend:
        return "score: dot product of the user and item vectors"
    terms = " × ".join(
        ["exp(dot / T)"]  # stage one's probability: Recommender._rerank
        + [
            f"({t}/max)^{w:g}" if rec.tasks[t] == "rating" else f"{t}^{w:g}"
            for t, w in rec.blend.items()
        ]
    )
    return (
        f"score: {terms}, re-ranking the top {rec.config.recommend.candidates} items by dot product"
    )


def titles(rec: Recommender, index: np.ndarray) -> list[str]:
    """Item titles, or raw ids when the catalogue has no title column."""
    raw = rec.run.items_raw
    if "title" in raw.columns:
        return [str(t) for t in raw["title"].to_numpy()[index]]
    return [str(i) for i in rec.run.item_ids.raw(np.asarray(index))]


def category_column(items: pd.DataFrame) -> str | None:
    """A categorical item column to colour the map by: a known name, else a low-cardinality
    text column (first value of "a|b" lists)."""
    for name in CATEGORY_COLUMNS:
        if name in items.columns:
            return name
    for name in items.columns:
        if name in ("item_id", "title") or items[name].dtype.kind in "iufcbmM":
            continue
        if 2 <= first_values(items[name]).nunique() <= 3 * MAX_CATEGORIES:
            return str(name)
    return None


def first_values(column: pd.Series) -> pd.Series:
    """The first value of each "a|b|c" cell ("(none)" when empty)."""
    first = column.fillna("").astype(str).str.split("|").str[0].str.strip()
    return first.replace("", "(none)")


def item_map(rec: Recommender, n_labels: int = 8) -> ItemMap:
    """PCA of the item vectors, coloured by an item category, the most popular items named."""
    from sklearn.decomposition import PCA

    vectors = rec.item_vectors.cpu().numpy().astype(np.float64)  # (I, D)
    pca = PCA(n_components=2, random_state=0)
    coords = pca.fit_transform(vectors)  # (I, 2)
    ratio = pca.explained_variance_ratio_
    column = category_column(rec.run.items_raw)
    category = None
    if column is not None:
        values = first_values(rec.run.items_raw[column])
        top = values.value_counts().index[:MAX_CATEGORIES]
        category = np.where(values.isin(top), values, "other").astype(str)
    popular = spread_popular(coords, item_counts(rec.run), n_labels)
    return ItemMap(
        coords, (float(ratio[0]), float(ratio[1])), category, column, popular, titles(rec, popular)
    )


def spread_popular(coords: np.ndarray, counts: np.ndarray, n: int, gap: float = 0.1) -> np.ndarray:
    """The most popular items whose labels do not pile up: greedily by popularity, each at least
    ``gap`` times the map's diagonal away from those already chosen.

    >>> xy = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 1.0], [0.5, 0.0]])
    >>> spread_popular(xy, np.array([9.0, 8.0, 1.0, 5.0]), n=3).tolist()  # item 1 sits on item 0
    [0, 3, 2]
    """
    gap *= float(np.linalg.norm(coords.max(axis=0) - coords.min(axis=0))) if len(coords) else 0.0
    chosen: list[int] = []
    for i in np.argsort(-counts, kind="stable").tolist():
        if all(np.linalg.norm(coords[i] - coords[j]) >= gap for j in chosen):
            chosen.append(i)
            if len(chosen) == n:
                break
    return np.asarray(chosen, dtype=np.int64)


def pick_users(rec: Recommender, n: int = N_SAMPLE_USERS, k: int = TOP_K) -> list[Any]:
    """Users with a test interaction (and ``k`` unseen items when possible), at the 10th, 50th
    and 90th percentile of activity, the most active first."""
    inter = rec.run.interactions
    pairs = inter[["user_idx", "item_idx"]].drop_duplicates()
    seen = np.bincount(pairs["user_idx"].to_numpy(), minlength=len(rec.run.user_ids))
    pool = np.unique(inter.loc[inter["split"] == "test", "user_idx"].to_numpy())
    if pool.size == 0:
        pool = np.unique(inter["user_idx"].to_numpy())
    roomy = pool[len(rec.run.item_ids) - seen[pool] >= k]
    pool = roomy if roomy.size else pool
    ordered = pool[np.argsort(-seen[pool], kind="stable")]
    picks = np.unique((np.linspace(0.1, 0.9, n) * (len(ordered) - 1)).round().astype(int))
    return list(rec.run.user_ids.raw(ordered[picks]))


def sample_user(rec: Recommender, user: Any) -> SampleUser:
    """One user's most recent interactions and top-10 with every task's prediction."""
    return SampleUser(user, user_history(rec, user), user_recommendations(rec, user))


def user_history(rec: Recommender, user: Any, n: int = HISTORY_SHOWN) -> pd.DataFrame:
    inter = rec.run.interactions
    idx = int(rec.user_index([user])[0])
    mine = inter[inter["user_idx"] == idx].sort_values("order", ascending=False).head(n)
    items = mine["item_idx"].to_numpy()
    out = pd.DataFrame(
        {
            "item": rec.run.item_ids.raw(items),
            "title": titles(rec, items),
            "split": mine["split"].to_numpy(),
        }
    )
    for name, kind in rec.run.meta["tasks"].items():
        if TASK_KINDS[kind].labelled and name in mine.columns:
            out[name] = mine[name].to_numpy()
    return _without_id_titles(rec, out)


def _without_id_titles(rec: Recommender, table: pd.DataFrame) -> pd.DataFrame:
    """Drop the title column when the catalogue has no titles (it would repeat the ids)."""
    return table if "title" in rec.run.items_raw.columns else table.drop(columns="title")


def user_recommendations(rec: Recommender, user: Any, k: int = TOP_K) -> pd.DataFrame:
    recs = rec.recommend([user], k)
    index, scores = recs.items, recs.scores
    filled = index[0] >= 0  # slots no item could fill are left out
    items, score = index[0][filled], scores[0][filled]
    raw = rec.run.item_ids.raw(items)
    out = pd.DataFrame(
        {"rank": np.arange(1, len(items) + 1), "item": raw, "title": titles(rec, items),
         "score": score}
    )  # fmt: skip
    if len(items):
        for name, values in rec.predict([user] * len(items), list(raw)).items():
            out[name] = values
    return _without_id_titles(rec, out)
