"""LightFM (Kula, 2015) with the WARP loss (Weston et al., 2011), with and without item features.

Item features: the identity feature of each item plus its MovieLens genres, or its attributes in
a sequence file (LightFM's hybrid model). Epochs, components and learning rate are chosen on
valid (fit on train, scored every ``EVERY`` epochs); the chosen setting is refit on train + valid
and scored once on test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from peers.common import Result, SplitData, rank_eval, timed
from peers.implicit_peers import user_items

GRID = [{"no_components": c, "learning_rate": lr} for c in (32, 64) for lr in (0.02, 0.05)]
MAX_EPOCHS, EVERY = 60, 5


def item_features(data: SplitData) -> sp.csr_matrix:
    """[identity | genres (MovieLens) or attributes (sequence files)] per item, rows normalised
    by LightFM."""
    column = "attributes" if "attributes" in data.dataset.items.columns else "genres"
    genres = [g if isinstance(g, list) else [] for g in data.dataset.items[column].tolist()]
    vocab = sorted({g for gs in genres for g in gs})
    col = {g: j for j, g in enumerate(vocab)}
    rows = [i for i, gs in enumerate(genres) for _ in gs]
    cols = [data.n_items + col[g] for gs in genres for g in gs]
    ident = list(range(data.n_items))
    ones = np.ones(len(ident) + len(rows), dtype=np.float32)
    shape = (data.n_items, data.n_items + len(vocab))
    return sp.csr_matrix((ones, (ident + rows, ident + cols)), shape)


def _vectors(model: Any, feats: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    """Dot-product form of LightFM's score: [u, 1, b_u] . [i, b_i, 1]."""
    ub, ue = model.get_user_representations()
    ib, ie = model.get_item_representations(feats)
    u = np.hstack([ue, np.ones((len(ue), 1)), ub[:, None]])
    i = np.hstack([ie, ib[:, None], np.ones((len(ie), 1))])
    return u, i


def _new(p: dict[str, Any], seed: int) -> Any:
    from lightfm import LightFM

    return LightFM(loss="warp", random_state=seed, **p)


def _curve(
    data: SplitData, p: dict[str, Any], feats: sp.csr_matrix | None, seed: int
) -> list[float]:
    """Valid NDCG@10 after every ``EVERY`` epochs (fit on train)."""
    model, m, out = _new(p, seed), user_items(data, ("train",)).tocoo(), []
    for _ in range(MAX_EPOCHS // EVERY):
        model.fit_partial(m, item_features=feats, epochs=EVERY, num_threads=2)
        out.append(rank_eval(data, *_vectors(model, feats), "valid")["ndcg@10"])
    return out


def run(data: SplitData, with_features: bool, seed: int = 0) -> Result:
    feats = item_features(data) if with_features else None
    best: tuple[float, dict[str, Any]] = (-1.0, {})
    for p in GRID:
        curve = _curve(data, p, feats, seed)
        k = int(np.argmax(curve))
        print(f"    valid {curve[k]:.4f} at {EVERY * (k + 1)} epochs  {p}", flush=True)
        if curve[k] > best[0]:
            best = (curve[k], {**p, "epochs": EVERY * (k + 1)})
    params = best[1]
    m = user_items(data, ("train", "valid")).tocoo()

    def fit() -> Any:
        model = _new({k: v for k, v in params.items() if k != "epochs"}, seed)
        return model.fit(m, item_features=feats, epochs=params["epochs"], num_threads=2)

    model, secs = timed(fit)
    name = "LightFM WARP + item features" if with_features else "LightFM WARP"
    note = f"grid of {len(GRID)} x epochs on valid; refit on train+valid"
    test = rank_eval(data, *_vectors(model, feats), "test")
    return Result(name, test, secs, params, {"ndcg@10": best[0]}, note)
