"""The Python API's edges (issue 21, defect 9): one documented shape for every ``k``, clear errors
for a ``k`` or ``users`` of the wrong kind, and one rule for raw ids in Python and over HTTP.
The tiny run (conftest ``tiny_run``): 60 users, 40 items, integer ids, a blend over 20
candidates; some users have seen all 40 items."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.integration.tiny import AUTH, KEY

from hydrarec.errors import ArgumentError, HydrarecError, UnknownIdError
from hydrarec.recommend.recommender import Recommender, UserQuery
from hydrarec.serving import create_app


def by_seen(rec: Recommender) -> tuple[int, int, int]:
    """(a user who has seen every item, the user with the fewest seen, how many that is)."""
    counts = rec.known.indptr[1:] - rec.known.indptr[:-1]
    assert counts.max() == rec.n_items
    ids = rec.run.user_ids.raw_ids
    return int(ids[counts.argmax()]), int(ids[counts.argmin()]), int(counts.min())


@pytest.mark.parametrize("k", [5, 39, 40, 41, 60])
def test_the_result_is_users_by_k_with_empty_slots_last(rec: Recommender, k: int) -> None:
    """k past a user's unseen items, and past the catalogue: (len(users), k) all the same, each
    row's eligible items first, then None ids and -inf scores (was (2, min(k, 40)))."""
    seen_all, light, n_seen = by_seen(rec)
    ids, scores = rec.recommend([seen_all, light], k=k)
    assert ids.shape == scores.shape == (2, k)
    assert all(i is None for i in ids[0]) and np.isneginf(scores[0]).all()
    filled = min(k, rec.n_items - n_seen)
    assert all(i is not None for i in ids[1, :filled]) and np.isfinite(scores[1, :filled]).all()
    assert all(i is None for i in ids[1, filled:]) and np.isneginf(scores[1, filled:]).all()
    assert len(set(ids[1, :filled].tolist())) == filled


def test_padded_slots_carry_nan_predictions_and_no_support(rec: Recommender) -> None:
    _, light, n_seen = by_seen(rec)
    out = rec.recommend([UserQuery(user_id=light)], k=50, explain=True, predictions=True)
    filled = rec.n_items - n_seen
    assert out.items.shape == out.scores.shape == (1, 50)
    assert (out.items[0, filled:] == -1).all() and (out.items[0, :filled] >= 0).all()
    for p in out.predictions.values():
        assert p.shape == (1, 50)
        assert np.isnan(p[0, filled:]).all() and np.isfinite(p[0, :filled]).all()
    assert out.support_ids is not None and out.support_ids.shape[:2] == (1, 50)
    assert all(i is None for i in out.support_ids[0, filled:].ravel())


def test_as_of_lists_have_the_same_shape(rec: Recommender) -> None:
    seen_all, light, _ = by_seen(rec)
    ids, scores = rec.recommend([seen_all, light], k=60, as_of="test", exclude_seen=False)
    assert ids.shape == scores.shape == (2, 60)
    assert all(i is None for i in ids[:, 40:].ravel())


BAD_K = [2.5, True, False, 0, -3, "3", np.float64(3.0), None]


@pytest.mark.parametrize("k", BAD_K, ids=repr)
def test_k_that_is_not_a_positive_integer_is_an_argument_error(rec: Recommender, k: Any) -> None:
    calls = [
        lambda: rec.recommend([1], k=k),
        lambda: rec.recommend([UserQuery(user_id=1)], k=k),
        lambda: rec.recommend([1, 2], k=k).table([1, 2]),
        lambda: rec.similar_items([1], k=k),
    ]
    for call in calls:
        with pytest.raises(ArgumentError, match="k must be a positive integer"):
            call()


def test_numpy_integers_are_a_k(rec: Recommender) -> None:
    ids, _ = rec.recommend([1], k=np.int64(3))
    assert ids.shape == (1, 3)


@pytest.mark.parametrize("users", [42, "42", np.int64(42), np.array(42), np.array([[1, 2]])])
def test_one_id_where_a_list_belongs_is_an_argument_error(rec: Recommender, users: Any) -> None:
    with pytest.raises(ArgumentError, match=r"users must be a list of raw ids \(\[x\] for one\)"):
        rec.recommend(users, k=3)
    with pytest.raises(ArgumentError, match="users must be a list"):
        rec.predict(users, [1])
    with pytest.raises(ArgumentError, match="items must be a list"):
        rec.similar_items(users, k=3)


def test_argument_errors_are_hydrarec_errors_and_what_python_raises() -> None:
    assert issubclass(ArgumentError, HydrarecError)
    assert issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, ValueError)


# -- one rule for raw ids -------------------------------------------------------------------------
def test_an_id_spelled_as_text_is_the_same_user_in_python(rec: Recommender) -> None:
    """The text "42" names user 42 of this integer-id run, as over HTTP (was unknown in
    Python)."""
    as_int, as_text = rec.recommend([42], k=5), rec.recommend(["42"], k=5)
    assert as_int.ids.tolist() == as_text.ids.tolist()
    np.testing.assert_array_equal(as_int.scores, as_text.scores)
    assert rec.predict(["42"], ["3"])["rating"] == rec.predict([42], [3])["rating"]


@pytest.mark.parametrize("raw", ["042", " 42", "42 ", "+42", "4_2", "٤٢", 42.0, True])
def test_other_spellings_are_unknown_in_python(rec: Recommender, raw: Any) -> None:
    with pytest.raises(UnknownIdError):
        rec.recommend([raw], k=5)
    with pytest.raises(UnknownIdError):
        rec.recommend([UserQuery(user_id=raw)], k=5)


@pytest.fixture(scope="module")
def client(rec: Recommender) -> Any:
    with TestClient(create_app(rec, api_key=KEY)) as c:
        yield c


@pytest.mark.parametrize("raw", ["042", " 42", "+42", "4_2", "٤٢"])
def test_and_unknown_over_http(client: TestClient, raw: str) -> None:
    """The service applies the same rule (was int(raw): "042" and " 42" found user 42)."""
    r = client.post("/recommend", json={"user_id": raw}, headers=AUTH)
    assert r.status_code == 404 and repr(raw) in r.json()["detail"]
    r = client.post("/predict", json={"pairs": [{"user_id": raw, "item_id": 3}]}, headers=AUTH)
    assert r.status_code == 404


def test_the_canonical_spelling_works_over_http(client: TestClient, rec: Recommender) -> None:
    r = client.post("/recommend", json={"user_id": "42", "k": 5}, headers=AUTH)
    assert r.status_code == 200
    assert [i["item_id"] for i in r.json()["items"]] == rec.recommend([42], k=5).ids[0].tolist()
    assert client.get("/items/3/similar", headers=AUTH).status_code == 200
    assert client.get("/items/03/similar", headers=AUTH).status_code == 404
