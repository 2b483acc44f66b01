"""benfred/implicit ALS (Hu, Koren & Volinsky, ICDM 2008) and BPR (Rendle et al., UAI 2009).

Tuned on valid (fit on train); the chosen setting is refit on train + valid and scored on test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from peers.common import Result, SplitData, rank_eval, select, timed

ALS_GRID = [
    {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
    for f in (32, 64, 128)
    for r in (0.01, 0.1)
    for a in (1.0, 10.0)
]
BPR_GRID = [
    {"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": it}
    for f in (64, 128)
    for lr in (0.01, 0.05)
    for it in (100, 300)
]


def user_items(data: SplitData, parts: tuple[str, ...]) -> sp.csr_matrix:
    """Binary (n_users, n_items) matrix of the interactions in ``parts``."""
    rows = data.part(*parts)
    ones = np.ones(len(rows), dtype=np.float32)
    m = sp.csr_matrix((ones, (data.users(rows), data.items(rows))), (data.n_users, data.n_items))
    m.data[:] = 1.0  # (a repeated pair counts once)
    return m


def _fit(kind: str, p: dict[str, Any], m: sp.csr_matrix, seed: int) -> tuple[Any, Any]:
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    if kind == "als":
        args = {k: v for k, v in p.items() if k != "alpha"}
        model = AlternatingLeastSquares(**args, alpha=p["alpha"], random_state=seed, num_threads=2)
    else:
        model = BayesianPersonalizedRanking(**p, random_state=seed, num_threads=2)
    model.fit(m, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def run(kind: str, data: SplitData, seed: int = 0) -> Result:
    """``kind`` "als" or "bpr": grid on valid, refit on train + valid, test once."""
    grid = ALS_GRID if kind == "als" else BPR_GRID
    train = user_items(data, ("train",))

    def score(p: dict[str, Any]) -> float:
        u, i = _fit(kind, p, train, seed)
        return rank_eval(data, u, i, "valid")["ndcg@10"]

    best, valid, _ = select(grid, score)
    (u, i), secs = timed(lambda: _fit(kind, best, user_items(data, ("train", "valid")), seed))
    name = "implicit ALS" if kind == "als" else "implicit BPR"
    return Result(
        name,
        rank_eval(data, u, i, "test"),
        secs,
        best,
        {"ndcg@10": valid},
        f"grid of {len(grid)} on valid; refit on train+valid",
    )
