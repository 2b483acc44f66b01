"""Most-popular: every user gets the items ranked by their number of interactions."""

from __future__ import annotations

import numpy as np

from peers.common import Result, SplitData, rank_eval, timed


def _counts(data: SplitData, parts: tuple[str, ...]) -> np.ndarray:
    items = data.items(data.part(*parts))
    return np.bincount(items, minlength=data.n_items).astype(np.float64)[:, None]  # (I, 1)


def run(data: SplitData, seed: int = 0) -> Result:
    ones = np.ones((data.n_users, 1))
    valid = rank_eval(data, ones, _counts(data, ("train",)), "valid")
    counts, secs = timed(lambda: _counts(data, ("train", "valid")))
    test = rank_eval(data, ones, counts, "test")
    return Result(
        "most-popular", test, secs, {}, {"ndcg@10": valid["ndcg@10"]}, "train+valid counts"
    )
