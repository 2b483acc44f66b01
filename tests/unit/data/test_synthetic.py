"""The synthetic generator (planted structure, streaming) and the MMoE paper's synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hydrarec.data.synthetic as synthetic
from hydrarec.config import SyntheticConfig
from hydrarec.data.mmoe_synthetic import mmoe_synthetic
from hydrarec.data.schema import Kind
from hydrarec.data.synthetic import generate, iter_interaction_chunks, planted_factors
from hydrarec.errors import ConfigError

CFG = SyntheticConfig(n_users=300, n_items=400, n_interactions=9000, dim=8, n_topics=6, seed=3)
COLUMNS = ["user_id", "item_id", "timestamp", "rating", "click", "like"]


@pytest.fixture(scope="module")
def ds():
    return generate(CFG)


def test_same_seed_same_data_other_seed_other_data(ds):
    again = generate(CFG)
    pd.testing.assert_frame_equal(ds.interactions, again.interactions)
    pd.testing.assert_frame_equal(ds.users, again.users)
    pd.testing.assert_frame_equal(ds.items, again.items)
    other = generate(CFG.model_copy(update={"seed": 4}))
    assert not ds.interactions[COLUMNS].equals(other.interactions[COLUMNS])
    u1, v1 = planted_factors(CFG)
    u2, v2 = planted_factors(CFG)
    assert np.array_equal(u1, u2) and np.array_equal(v1, v2)
    assert u1.shape == (300, 8) and v1.shape == (400, 8) and u1.dtype == np.float32


def test_counts_ids_and_uniqueness(ds):
    inter = ds.interactions
    assert (len(inter), ds.n_users, ds.n_items, ds.name) == (9000, 300, 400, "synthetic")
    assert ds.users["user_id"].tolist() == list(range(1, 301))  # raw id = index + 1
    assert not inter.duplicated(["user_id", "item_id"]).any()  # each pair at most once
    per_user = inter.groupby("user_idx").size()
    assert per_user.min() >= synthetic.MIN_PER_USER and per_user.max() <= 400
    assert per_user.max() > 3 * per_user.median()  # heavy-tailed activity


def test_schema_kinds_and_dtypes(ds):
    kinds = {
        (t, c.name): c.kind
        for t in ("interactions", "users", "items")
        for c in getattr(ds.schema, t)
    }
    assert kinds == {
        ("interactions", "rating"): Kind.REGRESSION,
        ("interactions", "click"): Kind.BINARY,
        ("interactions", "like"): Kind.BINARY,
        ("interactions", "timestamp"): Kind.TIMESTAMP,
        ("users", "user_id"): Kind.ID,
        ("users", "age"): Kind.NUMERIC,
        ("users", "segment"): Kind.CATEGORICAL,
        ("items", "item_id"): Kind.ID,
        ("items", "title"): Kind.TEXT,
        ("items", "genres"): Kind.MULTI_HOT,
    }
    inter = ds.interactions
    assert inter["rating"].dtype == np.float32 and set(inter["rating"].unique()) <= {1, 2, 3, 4, 5}
    for label in ("click", "like"):
        assert inter[label].dtype == np.int8 and set(inter[label].unique()) == {0, 1}
    assert inter["timestamp"].dtype == np.int64
    assert all(isinstance(g, list) and g and isinstance(g[0], str) for g in ds.items["genres"])
    assert all(3 <= len(t.split()) <= 6 for t in ds.items["title"])
    assert ds.users["age"].between(16, 80).all()
    assert "topic" not in ds.items.columns


def test_timestamps_increase_within_each_user(ds):
    inter = ds.interactions
    same_user = inter["user_idx"].diff().eq(0).to_numpy()[1:]
    assert (inter["timestamp"].diff().to_numpy()[1:][same_user] > 0).all()
    first, last = ds.summary()["time_span"]  # 2020-01-01 plus at most 1 + 2 years
    assert first >= "2020-01-01" and last < "2023-01-02"


def test_chunks_stream_the_same_rows_for_any_chunk_size(monkeypatch):
    monkeypatch.setattr(synthetic, "BLOCK_ROWS", 1000)  # many blocks, so chunks cross them
    whole = generate(CFG).interactions[COLUMNS]
    for size in (777, 4096, 100_000):
        chunks = list(iter_interaction_chunks(CFG, chunk_size=size))
        assert [len(c) for c in chunks[:-1]] == [size] * (len(chunks) - 1)
        pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_interacted_items_score_higher_than_random_items(ds):
    users, items = planted_factors(CFG)
    u, i = ds.interactions["user_idx"].to_numpy(), ds.interactions["item_idx"].to_numpy()
    seen = np.einsum("nd,nd->n", users[u], items[i])
    rnd = np.einsum("nd,nd->n", users[u], items[np.random.default_rng(0).permutation(i)])
    assert (seen > rnd).mean() > 0.75  # personal signal
    counts = np.bincount(i, minlength=CFG.n_items)
    top = np.sort(counts)[::-1][: CFG.n_items // 10].sum() / counts.sum()
    assert top > 0.2  # popularity skew: the top 10 % of items hold twice their share


def test_side_features_carry_the_topics(ds):
    users, items = planted_factors(CFG)
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    # title: items whose most common topic word prefix agrees have similar factors
    prefix = (
        ds.items["title"]
        .map(
            lambda t: pd.Series(
                [w.split("_")[0] for w in t.split() if "_" in w] or ["none"]
            ).mode()[0]
        )
        .to_numpy()
    )
    cos = unit @ unit.T
    same = prefix[:, None] == prefix[None, :]
    assert cos[same].mean() > cos[~same].mean() + 0.3
    # segment: users of one segment have similar factors
    seg = ds.users["segment"].to_numpy()
    uu = users / np.linalg.norm(users, axis=1, keepdims=True)
    ucos = uu @ uu.T
    assert (
        ucos[seg[:, None] == seg[None, :]].mean() > ucos[seg[:, None] != seg[None, :]].mean() + 0.2
    )


def test_task_correlation_controls_click_like_correlation():
    def corr(rho: float) -> tuple[float, pd.DataFrame]:
        inter = generate(CFG.model_copy(update={"task_correlation": rho})).interactions
        return float(np.corrcoef(inter["click"], inter["like"])[0, 1]), inter

    (c_neg, _), (c0, base), (c5, _), (c1, top) = (corr(r) for r in (-0.5, 0.0, 0.5, 1.0))
    assert c_neg < -0.1 and abs(c0) < 0.05 and c5 > 0.15 and c1 > c5 + 0.15
    # only `like` depends on the correlation: the same pairs, ratings and clicks
    assert base[["user_id", "item_id", "rating", "click"]].equals(
        top[["user_id", "item_id", "rating", "click"]]
    )
    assert np.corrcoef(base["rating"], base["click"])[0, 1] > 0.4  # rating follows affinity


def test_approximate_draws_match_exact_draws(monkeypatch):
    # 2000 items, ~20 interactions per user: every user on the candidate path. Measured: exact
    # 1.40, approximate 1.33, and 1.19 without the importance correction (what this guards).
    cfg = CFG.model_copy(update={"n_items": 2000, "n_interactions": 6000})
    users, items = planted_factors(cfg)

    def mean_affinity() -> float:
        inter = generate(cfg).interactions
        u, i = inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy()
        return float(np.einsum("nd,nd->n", users[u], items[i]).mean())

    approx = mean_affinity()
    monkeypatch.setattr(synthetic, "DENSE_FACTOR", 10**9)  # every user drawn exactly
    exact = mean_affinity()
    assert abs(approx - exact) < 0.08 * exact


def test_too_many_interactions_is_a_config_error():
    with pytest.raises(ConfigError, match="n_interactions"):
        generate(SyntheticConfig(n_users=2, n_items=3, n_interactions=7))
    tiny = generate(SyntheticConfig(n_users=2, n_items=3, n_interactions=6))  # every pair once
    assert len(tiny.interactions) == 6


# --- MMoE paper synthetic data ------------------------------------------------------------------


def test_mmoe_synthetic_shapes_and_determinism():
    x, y = mmoe_synthetic(2000, correlation=0.3, seed=1, dim=20)
    assert x.shape == (2000, 20) and y.shape == (2000, 2)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # x ~ N(0, I)
    x2, y2 = mmoe_synthetic(2000, correlation=0.3, seed=1, dim=20)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    with pytest.raises(ConfigError, match="correlation"):
        mmoe_synthetic(10, correlation=1.5, seed=0)


def test_mmoe_synthetic_label_correlation_rises_with_p():
    corrs = [
        np.corrcoef(mmoe_synthetic(5000, p, seed=0, dim=50)[1].T)[0, 1]
        for p in (-0.5, 0.0, 0.5, 0.9, 1.0)
    ]
    assert np.all(np.diff(corrs) > 0)
    assert corrs[-1] > 0.95  # p = 1: the same task up to the noise
