"""The baselines a run is shown beside in its report.

``popularity``: computed here on the run's own split with the run's own protocol. Retrieval ranks
each held-out item among ALL items by its number of training interactions (the same
``full_ranking_ranks`` the model is scored with: known and other held-out items excluded, ties
counted half); rating predicts the training mean; binary tasks score an item by its popularity.

Recorded baselines: ``RUN/baselines.json``, ``{"name": {"task/metric": value, ...}, ...}`` on the
test split, written by whatever compared the run with its peers (e.g. a benchmark script).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydrarec.evaluation.evaluate import full_ranking_ranks
from hydrarec.run.rundir import LoadedRun
from hydrarec.tasks.metrics import auc, mae, ranking_metrics, rmse

POPULARITY = "popularity"


def item_counts(run: LoadedRun) -> np.ndarray:
    """Training interactions per item, (I,) in catalogue order."""
    inter = run.interactions
    train = inter.loc[inter["split"] == "train", "item_idx"].to_numpy()
    return np.bincount(train, minlength=len(run.item_ids)).astype(np.float64)


def popularity_metrics(run: LoadedRun, split: str = "test") -> dict[str, float]:
    """The popularity baseline's metrics on ``split``, keyed ``task/metric`` like the model's."""
    inter = run.interactions
    rows = inter[inter["split"] == split]
    if len(rows) == 0 or not (inter["split"] == "train").any():  # streamed runs keep no train
        return {}
    counts = item_counts(run)
    out: dict[str, float] = {}
    for name, kind in run.meta["tasks"].items():
        if kind == "retrieval":
            values = _retrieval(run, rows, counts, split)
        elif kind == "rating" and name in rows.columns:
            values = _rating(inter.loc[inter["split"] == "train", name], rows[name])
        elif kind == "binary" and name in rows.columns:
            values = _binary(counts, rows, name)
        else:
            continue
        out.update({f"{name}/{k}": v for k, v in values.items() if not np.isnan(v)})
    return out


def _retrieval(
    run: LoadedRun, rows: pd.DataFrame, counts: np.ndarray, split: str
) -> dict[str, float]:
    known = run.known(("train",) if split == "valid" else ("train", "valid"))
    uniq, inverse = np.unique(rows["user_idx"].to_numpy(), return_inverse=True)
    # score = dot(1, count): the model's ranking code, unchanged, ranks items by popularity
    users = torch.ones(len(uniq), 1, dtype=torch.float64)  # (U, 1)
    items = torch.as_tensor(counts)[:, None]  # (I, 1)
    ranks = full_ranking_ranks(
        users, items, uniq, inverse, rows["item_idx"].to_numpy(), known, batch_size=256
    )
    return ranking_metrics(ranks, run.config.eval.ks)


def _rating(train: pd.Series, held_out: pd.Series) -> dict[str, float]:
    label = held_out.dropna().to_numpy(dtype=np.float64)
    if label.size == 0:
        return {}
    pred = np.full_like(label, float(np.nanmean(train.to_numpy(dtype=np.float64))))
    return {"rmse": rmse(pred, label), "mae": mae(pred, label)}


def _binary(counts: np.ndarray, rows: pd.DataFrame, name: str) -> dict[str, float]:
    ok = rows[name].notna().to_numpy()
    return {"auc": auc(counts[rows["item_idx"].to_numpy()[ok]], rows[name].to_numpy()[ok])}


def recorded_baselines(run_dir: Path) -> dict[str, dict[str, float]]:
    """``RUN/baselines.json`` if present: baseline name -> {metric: value} on test."""
    path = run_dir / "baselines.json"
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {str(n): {str(k): float(v) for k, v in m.items()} for n, m in raw.items()}


def baselines(run: LoadedRun) -> dict[str, dict[str, float]]:
    """Every baseline of the report: popularity first, then the recorded ones."""
    return {POPULARITY: popularity_metrics(run, "test"), **recorded_baselines(run.run.path)}
