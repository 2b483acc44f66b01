"""Surprise (Hug, JOSS 2020): SVD (Funk / Koren biased MF) and SVD++ (Koren, KDD 2008).

Tuned on valid (carved from u1.base exactly as hydrarec carves it), then refit on all of u1.base
(train + valid) with the chosen setting and scored once on u1.test. The untuned defaults fit on
u1.base are reported too (the figures usually quoted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from peers.common import Result, SplitData, select, timed

SVD_GRID = [
    {"n_factors": 100, "n_epochs": e, "lr_all": lr, "reg_all": r}
    for e in (20, 40)
    for lr in (0.005, 0.01)
    for r in (0.02, 0.05, 0.1)
]
SVDPP_GRID = [
    {"n_factors": 20, "n_epochs": 20, "lr_all": 0.007, "reg_all": r} for r in (0.02, 0.05)
]


def _trainset(data: SplitData, parts: tuple[str, ...]) -> Any:
    import pandas as pd
    from surprise import Dataset, Reader

    rows = data.part(*parts)
    df = pd.DataFrame(
        {"u": data.users(rows), "i": data.items(rows), "r": data.column("rating", rows)}
    )
    return Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()


def _rmse_mae(algo: Any, data: SplitData, part: str) -> dict[str, float]:
    rows = getattr(data.split, part)
    u, i, r = data.users(rows), data.items(rows), data.column("rating", rows).astype(float)
    pred = np.array([algo.predict(a, b).est for a, b in zip(u.tolist(), i.tolist(), strict=True)])
    err = pred - r
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def _algo(kind: str, p: dict[str, Any], seed: int) -> Any:
    from surprise import SVD, SVDpp

    return (SVD if kind == "svd" else SVDpp)(random_state=seed, **p)


def run(kind: str, data: SplitData, seed: int = 0) -> Result:
    """``kind`` "svd" or "svdpp": grid on valid, refit on u1.base, test once."""
    grid = SVD_GRID if kind == "svd" else SVDPP_GRID
    train = _trainset(data, ("train",))

    def score(p: dict[str, Any]) -> float:
        return -_rmse_mae(_algo(kind, p, seed).fit(train), data, "valid")["rmse"]

    best, valid, _ = select(grid, score)
    full = _trainset(data, ("train", "valid"))
    algo, secs = timed(lambda: _algo(kind, best, seed).fit(full))
    name = "Surprise SVD" if kind == "svd" else "Surprise SVD++"
    note = f"grid of {len(grid)} on valid; refit on u1.base"
    return Result(name, _rmse_mae(algo, data, "test"), secs, best, {"rmse": -valid}, note)


def run_default(kind: str, data: SplitData, seed: int = 0) -> Result:
    """Surprise's default hyper-parameters fit on u1.base (no tuning)."""
    from surprise import SVD, SVDpp

    full = _trainset(data, ("train", "valid"))
    algo, secs = timed(lambda: (SVD if kind == "svd" else SVDpp)(random_state=seed).fit(full))
    name = "Surprise SVD (defaults)" if kind == "svd" else "Surprise SVD++ (defaults)"
    return Result(name, _rmse_mae(algo, data, "test"), secs, {"defaults": True}, note="untuned")
