"""``Recommender`` on the tiny trained run (conftest ``tiny_run``: 60 users, 40 items, blend
``exp(dot / T) like^1 (rating/5)^0.5`` over 20 retrieved candidates), checked against direct
computations."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydrarec.data.registry import load_dataset
from hydrarec.errors import DataError, UnknownIdError
from hydrarec.io.atomic import read_tensors, write_tensors
from hydrarec.recommend.recommender import Recommender, UserQuery
from hydrarec.run.index import build_index, saved_index


def seen(rec: Recommender, user: int) -> set[int]:
    u = rec.user_index([user])[0]
    return set(rec.known.items[rec.known.indptr[u] : rec.known.indptr[u + 1]].tolist())


def seen_raw(rec: Recommender, user: int) -> set[int]:
    return set(rec.run.item_ids.raw(sorted(seen(rec, user))).tolist())


def light_users(rec: Recommender, n: int) -> list[int]:
    """The ``n`` users with the fewest seen items (many tiny-run users have seen all 40)."""
    users = rec.run.user_ids.raw_ids
    counts = [len(seen(rec, u)) for u in users]
    return [int(users[i]) for i in np.argsort(counts, kind="stable")[:n]]


def blend_of(rec: Recommender, user: int, items: np.ndarray) -> np.ndarray:
    """log(exp(dot / T) like^1 (rating / 5)^0.5) from ``predict``, computed independently of
    ``recommend``: stage one's probability (T: the retrieval temperature) stays in the blend."""
    p = rec.predict([user] * len(items), list(items))
    t = next(task.temperature for task in rec.config.tasks if task.kind == "retrieval")
    return p["retrieval"] / t + np.log(p["like"]) + 0.5 * np.log(p["rating"] / 5.0)


def test_the_run_has_its_saved_index(rec: Recommender, tiny_run: Path) -> None:
    found = saved_index(rec.run.run, "exact")
    assert found is not None and len(found[0]) == rec.n_items == 40
    assert rec.index.kind == "exact"


def test_two_stages_rank_the_top_candidates_by_the_blend(rec: Recommender) -> None:
    users = light_users(rec, 8)  # >= 25 unseen items each: stage one keeps 20 of them
    ids, scores = rec.recommend(users, k=5)
    for row, user in enumerate(users):
        uv = rec.user_vectors(rec.user_index([user]))  # stage one by hand: top 20 unseen by dot
        dots = (uv @ rec.item_vectors.T)[0].numpy()
        dots[list(seen(rec, user))] = -np.inf
        cand = np.argsort(-dots, kind="stable")[:20]
        assert np.isfinite(dots[cand]).all()
        cand_raw = rec.run.item_ids.raw(cand)
        blend = blend_of(rec, user, cand_raw)
        expected = cand_raw[np.argsort(-blend, kind="stable")[:5]]
        assert ids[row].tolist() == expected.tolist()
        np.testing.assert_allclose(scores[row], np.sort(blend)[::-1][:5], rtol=1e-5)


def test_seen_items_are_excluded_unless_asked(rec: Recommender) -> None:
    users = light_users(rec, 20)
    ids, _ = rec.recommend(users, k=10)
    assert all(not (set(ids[r].tolist()) & seen_raw(rec, u)) for r, u in enumerate(users))
    with_seen, _ = rec.recommend(users, k=10, exclude_seen=False)
    assert any(set(with_seen[r].tolist()) & seen_raw(rec, u) for r, u in enumerate(users))


def test_allow_and_deny_lists(rec: Recommender) -> None:
    user = rec.run.user_ids.raw_ids[0]
    allow = list(rec.run.item_ids.raw_ids[:12])
    ids, _ = rec.recommend([user], k=4, allow=allow, exclude_seen=False)
    assert set(ids[0].tolist()) <= set(allow)
    # every allowed item is a candidate (12 < 20): the result is the blend order of all of them
    blend = blend_of(rec, user, np.asarray(allow))
    assert ids[0].tolist() == np.asarray(allow)[np.argsort(-blend, kind="stable")[:4]].tolist()
    top, _ = rec.recommend([user], k=5, exclude_seen=False)
    denied, _ = rec.recommend([user], k=5, exclude_seen=False, deny=top[0][:2].tolist())
    assert not set(denied[0].tolist()) & set(top[0][:2].tolist())
    assert None not in denied[0].tolist()  # the next candidates fill the list


def test_allow_smaller_than_k_leaves_empty_slots(rec: Recommender) -> None:
    user = rec.run.user_ids.raw_ids[0]
    ids, scores = rec.recommend(
        [user], k=5, allow=list(rec.run.item_ids.raw_ids[:3]), exclude_seen=False
    )
    assert ids[0][3:].tolist() == [None, None] and np.isneginf(scores[0][3:]).all()
    assert rec.recommend([user], 5, exclude_seen=False).table([user]).shape[0] == 5  # no blend cut


def test_explanations_are_the_nearest_history_items(rec: Recommender) -> None:
    user = light_users(rec, 1)[0]
    out = rec.recommend([UserQuery(user_id=user)], k=4, explain=True)
    assert out.support is not None and out.support_scores is not None
    unit = torch.nn.functional.normalize(rec.item_vectors, dim=1)
    history = sorted(seen(rec, user))
    for j, item in enumerate(out.items[0]):
        sims = (unit[history] @ unit[item]).numpy()  # cosine to every history item
        best = np.sort(sims)[::-1][:3]
        np.testing.assert_allclose(out.support_scores[0, j], best, rtol=1e-5)
        assert set(out.support[0, j].tolist()) <= set(history)
    assert out.support_ids is not None and out.support_ids.shape == (1, 4, 3)


def test_history_and_features_describe_a_cold_user(rec: Recommender) -> None:
    """A user known only by history and features gets the vector the tower gives the same user
    with the out-of-vocabulary id: the feature pipeline and the history path are the model's."""
    user = light_users(rec, 1)[0]
    u = rec.user_index([user])
    raw = load_dataset(rec.config.data).users.set_index("user_id").loc[user]
    items = rec.known.items[rec.known.indptr[u[0]] : rec.known.indptr[u[0] + 1]]
    query = UserQuery(
        history=list(rec.run.item_ids.raw(items)),
        features={"age": int(raw["age"]), "segment": str(raw["segment"])},
    )
    feats = rec.run.users.gather(torch.as_tensor(u))
    feats.ids[:] = 1  # out of vocabulary
    hist, mask = rec.known.last_n(u, rec.config.model.sequence.max_len)
    expected = rec.model.encode_users(
        feats, rec.item_vectors[torch.as_tensor(hist)], torch.as_tensor(mask)
    )
    torch.testing.assert_close(rec.queries.resolve([query]).vectors, expected)
    ids = rec.recommend([query], k=5).ids
    assert not set(ids[0].tolist()) & set(rec.run.item_ids.raw(items).tolist())


def test_unknown_users_and_features_are_named(rec: Recommender) -> None:
    with pytest.raises(UnknownIdError, match=r"unknown user id.*987654"):
        rec.recommend([UserQuery(user_id=987654)])
    with pytest.raises(UnknownIdError, match="987654"):
        rec.recommend([987654])
    out = rec.recommend([UserQuery(user_id=987654, history=[1, 2])], k=3)  # cold: fine
    assert out.ids.shape == (1, 3)
    with pytest.raises(DataError, match="'height'"):
        rec.recommend([UserQuery(features={"height": 180})])
    with pytest.raises(UnknownIdError, match=r"unknown item id.*4242"):
        rec.recommend([UserQuery(history=[4242])])


def test_many_users_at_once_equal_one_by_one(rec: Recommender) -> None:
    users = list(rec.run.user_ids.raw_ids)
    ids, scores = rec.recommend(users, k=6)
    for r in range(0, len(users), 7):
        one_ids, one_scores = rec.recommend([users[r]], k=6)
        assert one_ids[0].tolist() == ids[r].tolist()
        np.testing.assert_allclose(one_scores[0], scores[r], rtol=1e-5)
    queries = [
        UserQuery(user_id=users[0]),
        UserQuery(history=[3, 7, 9]),
        UserQuery(user_id=users[1], history=[2]),
        UserQuery(features={"age": 30}),
    ]
    many = rec.recommend(queries, k=4, explain=True, predictions=True)
    for r, q in enumerate(queries):
        one = rec.recommend([q], k=4, explain=True, predictions=True)
        assert one.ids[0].tolist() == many.ids[r].tolist()
        np.testing.assert_allclose(one.scores[0], many.scores[r], rtol=1e-5)
        np.testing.assert_allclose(
            one.predictions["rating"][0], many.predictions["rating"][r], rtol=1e-5
        )
        assert one.support is not None and many.support is not None
        assert one.support[0].tolist() == many.support[r].tolist()


def test_ids_queries_and_batches_give_one_answer(rec: Recommender) -> None:
    """Raw ids and ``UserQuery``s of the same known users, and any ``batch_size``, rank alike
    (scores to float rounding: a batch's matrix product sums in its own order)."""
    users = list(rec.run.user_ids.raw_ids)
    whole = rec.recommend(users, k=500, explain=True, predictions=True)  # k > items: empty slots
    by_query = rec.recommend([UserQuery(user_id=u) for u in users], k=500, explain=True)
    batched = rec.recommend(users, k=500, explain=True, predictions=True, batch_size=7)
    for got in (by_query, batched):
        np.testing.assert_array_equal(got.ids, whole.ids)  # None in the same empty slots
        np.testing.assert_array_equal(got.support_ids, whole.support_ids)
        np.testing.assert_allclose(got.scores, whole.scores, rtol=1e-5)
    np.testing.assert_allclose(batched.predictions["like"], whole.predictions["like"], rtol=1e-5)
    table = batched.table(users)
    assert table["item_id"].dtype == rec.run.item_ids.raw_ids.dtype  # not object: None is gone
    assert len(table) == int((whole.items >= 0).sum())


def test_known_user_vectors_are_cached_and_equal_a_fresh_encoding(tiny_run: Path) -> None:
    fresh = Recommender.load(tiny_run)
    q = fresh.queries
    q.cache_size = 3
    users = np.arange(5)
    first = q.known_users(users).vectors  # computed, then the cache keeps the last three
    assert list(q._known) == [2, 3, 4]
    torch.testing.assert_close(q.known_users(users).vectors, first)
    # the cached rows equal the tower's output without a cache
    hist, mask = q.known_users(users).history, q.known_users(users).mask
    feats = fresh.run.users.gather(torch.from_numpy(users))
    torch.testing.assert_close(q._encode(feats, hist, mask), first, rtol=1e-5, atol=1e-6)
    # a request by id alone reads the cache; one with a history extension does not
    raw = fresh.run.user_ids.raw_ids
    by_id = q.resolve([UserQuery(user_id=raw[4])]).vectors
    assert torch.equal(by_id[0], first[4])
    extended = q.resolve([UserQuery(user_id=raw[4], history=[3])])
    assert extended.mask.sum() == mask[4].sum() + 1
    want = q._encode(fresh.run.users.gather(torch.tensor([4])), extended.history, extended.mask)
    torch.testing.assert_close(extended.vectors, want)


def test_warming_encodes_the_most_active_users_first(tiny_run: Path) -> None:
    fresh = Recommender.load(tiny_run)
    q = fresh.queries
    q.cache_size = 4
    active = np.diff(q.known.indptr)
    assert fresh.warm() == 4
    # the cache holds the four most active users (ties: the lower index first)
    assert sorted(q._known) == sorted(np.argsort(-active, kind="stable")[:4].tolist())
    want = Recommender.load(tiny_run).queries.known_users(np.array(sorted(q._known))).vectors
    encoded: list[int] = []
    real = q._encode
    q._encode = lambda *a: encoded.append(1) or real(*a)  # type: ignore[method-assign]
    got = q.known_users(np.array(sorted(q._known))).vectors
    assert encoded == []  # answered from the cache, and equal to a cold encoding
    torch.testing.assert_close(got, want)


def test_faiss_indexes_agree_with_exact(tiny_run: Path, rec: Recommender) -> None:
    users = list(rec.run.user_ids.raw_ids)
    exact, _ = rec.recommend(users, k=5)
    for kind in ("faiss_hnsw", "faiss_ivf"):
        approx, _ = Recommender.load(tiny_run, index=kind).recommend(users, k=5)
        assert (approx == exact).mean() >= 0.95, kind


def test_a_stale_index_is_rebuilt_in_memory(tiny_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    weights = read_tensors(run / "model.safetensors")
    weights = {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}
    write_tensors(run / "model.safetensors", weights)  # as if retrained after the index
    with pytest.warns(UserWarning, match="not built from these weights"):
        rec = Recommender.load(run)
    assert rec.index.kind == "exact" and len(rec.index) == 40
    user = light_users(rec, 1)[0]
    ids, _ = rec.recommend([user], k=5)
    build_index(run)  # rebuilt on disk: loads without a warning, same results
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Recommender.load(run)
    assert again.recommend([user], k=5).ids.tolist() == ids.tolist()


def test_cli_all_users_writes_the_library_ranking(tiny_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hydrarec.cli import app

    out = tmp_path / "recs.parquet"
    args = ["recommend", str(tiny_run), "--all-users", "-k", "4", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--index", "faiss_hnsw"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    rec = Recommender.load(tiny_run, index="faiss_hnsw")
    users = list(rec.run.user_ids.raw_ids)
    expected = rec.recommend(users, 4).table(users)
    assert df["user_id"].dtype.kind == "i" and len(df) == len(expected)
    assert df["item_id"].tolist() == expected["item_id"].tolist()
    assert df.groupby("user_id")["rank"].max().max() == 4
