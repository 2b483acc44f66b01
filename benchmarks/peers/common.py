"""What every peer adapter shares: the protocol data, the ranking evaluation, the result record.

The split rows come from hydrarec itself (``hydrarec.data.splits``), and ranking metrics from
hydrarec's own ``full_ranking_ranks``: every peer is scored on exactly the rows, the candidate set
(all items minus the user's known items) and the tie rule (ties count half) that hydrarec is.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hydrarec.config import DataConfig, SplitConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import load_dataset
from hydrarec.data.schema import TIMESTAMP
from hydrarec.data.splits import Split, make_split
from hydrarec.evaluation.evaluate import full_ranking_ranks
from hydrarec.features.batching import UserHistories
from hydrarec.tasks.metrics import ranking_metrics

KS = (10, 20)
WITH_KNOWN = "with_known/"  # metrics with the user's known items ranked too


def peak_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class Result:
    """One system's row: test metrics, training seconds, hyper-parameters, notes."""

    system: str
    metrics: dict[str, float]
    seconds: float
    params: dict[str, Any]
    valid: dict[str, float] = field(default_factory=dict)
    note: str = ""
    peak_mib: float = 0.0


@dataclass
class SplitData:
    """A dataset with one split, as index arrays (user, item, rating, timestamp) per part."""

    dataset: Dataset
    split: Split
    n_users: int
    n_items: int

    def part(self, *names: str) -> np.ndarray:
        return np.sort(np.concatenate([getattr(self.split, n) for n in names]))

    def column(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.dataset.interactions[name].to_numpy()[rows]

    def users(self, rows: np.ndarray) -> np.ndarray:
        return self.column("user_idx", rows).astype(np.int64)

    def items(self, rows: np.ndarray) -> np.ndarray:
        return self.column("item_idx", rows).astype(np.int64)

    def known(self, *parts: str) -> UserHistories:
        """Each user's items in ``parts``, oldest first (the exclusion set when ranking)."""
        inter = self.dataset.interactions
        ts = inter[TIMESTAMP].to_numpy() if TIMESTAMP in inter.columns else None
        u, i = inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy()
        return UserHistories(u, i, ts, rows=self.part(*parts), n_users=self.n_users)


def load_split(split: SplitConfig, data: DataConfig | None = None) -> SplitData:
    """The dataset ``data`` names (default MovieLens-100K, from ``HYDRAREC_DATA_DIR``), split
    exactly as a hydrarec config with that ``[data]`` section splits it."""
    cfg = (data or DataConfig(dataset="movielens-100k")).model_copy(update={"split": split})
    ds = load_dataset(cfg)
    return SplitData(ds, make_split(ds, split), ds.n_users, ds.n_items)


def rank_eval(
    data: SplitData, user_vecs: np.ndarray, item_vecs: np.ndarray, part: str
) -> dict[str, float]:
    """Full-ranking HR/NDCG@10,20 of ``part`` ("valid" or "test") for dot-product scores.

    ``user_vecs`` is (n_users, D), ``item_vecs`` (n_items, D): score = user . item. Known items:
    train when scoring valid, train + valid when scoring test (hydrarec's rule). On test the
    figures with the known items ranked too are added as ``with_known/<metric>`` (``hydrarec
    evaluate --with-known``).
    """
    rows = getattr(data.split, part)
    known = data.known("train") if part == "valid" else data.known("train", "valid")
    users = data.users(rows)
    uniq, inverse = np.unique(users, return_inverse=True)
    uv = torch.as_tensor(np.ascontiguousarray(user_vecs[uniq]), dtype=torch.float64)
    iv = torch.as_tensor(np.ascontiguousarray(item_vecs), dtype=torch.float64)
    out: dict[str, float] = {}
    for exclude in (True, False) if part == "test" else (True,):
        ranks = full_ranking_ranks(uv, iv, uniq, inverse, data.items(rows), known, 256, exclude)
        res = ranking_metrics(ranks, KS)
        prefix = "" if exclude else WITH_KNOWN
        out |= {prefix + k: v for k, v in res.items() if not k.startswith("mrr")}
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def select(
    grid: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]
) -> tuple[dict[str, Any], float, list[tuple[dict[str, Any], float]]]:
    """The grid point with the highest validation ``score`` (and every point's score)."""
    seen = [(p, score(p)) for p in grid]
    for p, s in seen:
        print(f"    valid {s:.4f}  {p}", flush=True)
    best, best_score = max(seen, key=lambda t: t[1])
    return best, best_score, seen
