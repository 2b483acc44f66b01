"""UserHistories and BatchBuilder on hand-worked examples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from hydrarec.errors import DataError
from hydrarec.features.batch import Batch, EntityFeatures
from hydrarec.features.batching import BatchBuilder, UserHistories

# row: user, item, time. User 0 saw 4 (t1), 1 (t2), 2 (t3); user 1 saw 5 (t4), 3 (t5), 0 (t6).
USERS = np.array([0, 0, 1, 0, 1, 1])
ITEMS = np.array([2, 4, 3, 1, 0, 5])
TIMES = np.array([3, 1, 5, 2, 6, 4])
RATING = np.array([5.0, np.nan, 3.0, 4.0, np.nan, 1.0], dtype=np.float32)
N_ITEMS = 7  # item 6 is never interacted with


def test_history_before_is_right_aligned_and_strictly_earlier() -> None:
    h = UserHistories(USERS, ITEMS, TIMES)
    assert h.items.tolist() == [4, 1, 2, 5, 3, 0] and h.indptr.tolist() == [0, 3, 6]
    # user 0's rows in time order: row 1 (item 4), row 3 (item 1), row 0 (item 2)
    items, mask = h.history_before(np.array([1, 3, 0]), 2, pad=-1)
    assert items.tolist() == [[-1, -1], [-1, 4], [4, 1]]
    assert mask.tolist() == [[False, False], [False, True], [True, True]]
    items, _ = h.history_before(np.array([4]), 3)  # user 1's last row; padding 0 by default
    assert items.tolist() == [[0, 5, 3]]


def test_last_n_and_unknown_users() -> None:
    h = UserHistories(USERS, ITEMS, TIMES)
    items, mask = h.last_n(np.array([0, 1, 7, -1]), 4, pad=-1)
    assert items.tolist() == [[-1, 4, 1, 2], [-1, 5, 3, 0], [-1, -1, -1, -1], [-1, -1, -1, -1]]
    assert mask.sum(axis=1).tolist() == [3, 3, 0, 0]


def test_ties_keep_file_order_and_no_timestamp_means_file_order() -> None:
    h = UserHistories(np.array([0, 0, 0]), np.array([7, 8, 9]), np.array([5, 5, 1]))
    assert h.items.tolist() == [9, 7, 8]
    assert UserHistories(np.array([0, 0, 0]), np.array([7, 8, 9])).items.tolist() == [7, 8, 9]


def test_histories_of_a_subset_of_rows() -> None:
    train = np.array([0, 1, 2, 5])  # rows 3 and 4 are held out
    h = UserHistories(USERS, ITEMS, TIMES, rows=train, n_users=3)
    items, mask = h.history_before(np.array([0]), 2)
    assert items.tolist() == [[0, 4]] and mask.tolist() == [[False, True]]  # row 3 is not train
    assert h.last_n(np.array([2]), 2)[1].tolist() == [[False, False]]  # user 2: no history
    with pytest.raises(DataError, match=r"rows \[3\] are not in these histories"):
        h.history_before(np.array([3]), 2)


def _table(n: int, offset: int) -> EntityFeatures:
    """Features that reveal which row was gathered: ids = offset + row, etc."""
    rows = torch.arange(n)
    return EntityFeatures(
        ids=rows + offset,
        categorical={"c": rows * 2},
        numeric=rows.float()[:, None].repeat(1, 2),
        multi_hot={"m": torch.stack([rows, rows + 1], dim=1)},
    )


def _builder(**kw: object) -> BatchBuilder:
    args: dict[str, object] = {
        "user_idx": USERS,
        "item_idx": ITEMS,
        "labels": {"rating": RATING, "row": np.arange(6, dtype=np.float32)},
        "user_features": _table(3, 100),
        "item_features": _table(N_ITEMS, 10),
        "histories": UserHistories(USERS, ITEMS, TIMES),
        "history_len": 2,
    }
    args.update(kw)
    return BatchBuilder(**args)  # type: ignore[arg-type]


def test_batch_positions_reconstruct_items_and_histories() -> None:
    b = _builder().build(np.array([0, 3, 4, 1]))
    # distinct items: rows' items {2, 1, 0, 4} and histories {4, 1} + {5, 3} -> 0..5, sorted
    assert b.item_index.tolist() == [0, 1, 2, 3, 4, 5]
    assert b.item_index[b.item_pos].tolist() == [2, 1, 0, 4]
    assert b.items.ids[b.item_pos].tolist() == [12, 11, 10, 14]  # features follow the items
    assert b.items.multi_hot["m"][b.item_pos].tolist() == [[2, 3], [1, 2], [0, 1], [4, 5]]
    hist = torch.where(b.history_mask, b.item_index[b.history], -1)
    assert hist.tolist() == [[4, 1], [-1, 4], [5, 3], [-1, -1]]
    assert (b.history[~b.history_mask] == 0).all()
    assert b.user_index.tolist() == [0, 0, 1, 0]
    assert b.users.ids.tolist() == [100, 100, 101, 100]
    assert b.item_logq.tolist() == [0.0] * 6  # no distributions given


def test_distinct_items_leave_out_unused_items() -> None:
    b = _builder(history_len=1).build(np.array([2]))  # user 1's item 3 after item 5
    assert b.item_index.tolist() == [3, 5]
    assert b.item_pos.tolist() == [0] and b.history.tolist() == [[1]]


def test_labels_missing_become_zero_with_mask() -> None:
    b = _builder().build(np.array([0, 1, 4, 5]))
    assert b.labels["rating"].tolist() == [5.0, 0.0, 0.0, 1.0]
    assert b.label_mask["rating"].tolist() == [True, False, False, True]
    assert b.labels["rating"].dtype == torch.float32
    assert b.label_mask["row"].all()


def test_matches_np_unique_on_random_data() -> None:
    rng = np.random.default_rng(0)
    n, n_items = 400, 50
    users, items = rng.integers(0, 20, n), rng.integers(0, n_items, n)
    h = UserHistories(users, items, rng.integers(0, 30, n))
    bb = BatchBuilder(users, items, {}, _table(20, 0), _table(n_items, 0), h, history_len=5)
    rows = rng.permutation(n)[:64]
    b = bb.build(rows)
    hist, mask = h.history_before(rows, 5)
    uniq, inv = np.unique(np.concatenate([items[rows], hist[mask]]), return_inverse=True)
    assert b.item_index.tolist() == uniq.tolist()
    assert b.item_pos.tolist() == inv[:64].tolist()
    assert b.history[torch.from_numpy(mask)].tolist() == inv[64:].tolist()


class FixedSampler:
    """Draws items 6, 6, 0 (6 is in no batch otherwise) with probability 1/7 each."""

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return np.array([6, 6, 0][:n]), np.full(n, -math.log(7))

    def log_prob(self, items: np.ndarray) -> np.ndarray:
        return np.full(len(items), -math.log(7))


def test_negatives_join_the_distinct_items_with_mixture_logq() -> None:
    log_prob = np.log(np.array([1, 1, 2, 1, 1, 2, 2]) / 10)
    bb = _builder(negatives=3, sampler=FixedSampler(), item_log_prob=log_prob, history_len=0)
    b = bb.build(np.array([0, 2]), np.random.default_rng(0))  # items 2 and 3
    assert b.item_index.tolist() == [0, 2, 3, 6]
    # B = 2 in-batch slots, K = 3 sampled: q = (2 * p_batch + 3 / 7) / 5
    expected = [math.log((2 * p + 3 / 7) / 5) for p in (0.1, 0.2, 0.1, 0.2)]
    np.testing.assert_allclose(b.item_logq.numpy(), expected, rtol=1e-6)
    only_batch = _builder(item_log_prob=log_prob, history_len=0).build(np.array([0, 2]))
    np.testing.assert_allclose(only_batch.item_logq.numpy(), np.log([0.2, 0.1]), rtol=1e-6)


def test_full_catalogue() -> None:
    table = _table(N_ITEMS, 10)
    b = _builder(full_catalogue=True, item_features=table).build(np.array([0, 4]))
    assert b.item_index.tolist() == list(range(N_ITEMS))
    assert b.items is table  # the table itself, no copy
    assert b.item_pos.tolist() == [2, 0]
    assert b.history.tolist() == [[4, 1], [5, 3]]
    assert b.item_logq.tolist() == [0.0] * N_ITEMS


def test_last_mode_for_rows_outside_the_histories() -> None:
    train = np.array([0, 1, 3, 5])
    h = UserHistories(USERS, ITEMS, TIMES, rows=train)
    b = _builder(histories=h, history_mode="last").build(np.array([2, 4]))  # user 1's test rows
    hist = torch.where(b.history_mask, b.item_index[b.history], -1)
    assert hist.tolist() == [[-1, 5], [-1, 5]]  # user 1 has only item 5 in train


def _flat(lists: list[list[int]]) -> list[int]:
    return list(itertools.chain.from_iterable(lists))


def _rows_of(batches: list[Batch]) -> list[list[int]]:
    return [b.labels["row"].int().tolist() for b in batches]


def _many(n: int = 40) -> BatchBuilder:
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 5, n), rng.integers(0, N_ITEMS, n)
    return BatchBuilder(
        users,
        items,
        {"row": np.arange(n, dtype=np.float32)},
        _table(5, 0),
        _table(N_ITEMS, 0),
        UserHistories(users, items),
        history_len=3,
        negatives=2,
        sampler=RandomSampler(),
    )


class RandomSampler:
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, N_ITEMS, n), np.full(n, -math.log(N_ITEMS))

    def log_prob(self, items: np.ndarray) -> np.ndarray:
        return np.full(len(items), -math.log(N_ITEMS))


def test_iterate_is_deterministic_under_a_seed() -> None:
    bb = _many()
    a, b = (
        list(bb.iterate(np.arange(40), 8, True, seed=3)),
        list(bb.iterate(np.arange(40), 8, True, 3)),
    )
    assert _rows_of(a) == _rows_of(b)
    assert all(torch.equal(x.item_index, y.item_index) for x, y in zip(a, b, strict=True))
    assert _rows_of(a) != _rows_of(list(bb.iterate(np.arange(40), 8, True, seed=4)))
    assert sorted(_flat(_rows_of(a))) == list(range(40))  # one epoch covers every row once
    ordered = _rows_of(list(bb.iterate(np.arange(40), 8, shuffle=False)))
    assert ordered[0] == list(range(8))


def test_iterate_batch_sizes_and_drop_last() -> None:
    bb = _many()
    sizes = [len(b) for b in bb.iterate(np.arange(10), 4, shuffle=False)]
    assert sizes == [4, 4, 2] and bb.num_batches(10, 4) == 3
    assert [len(b) for b in bb.iterate(np.arange(10), 4, False, drop_last=True)] == [4, 4]


def test_shards_are_disjoint_and_cover_the_epoch() -> None:
    bb = _many()
    rows = np.arange(40)
    # 5 batches of 8 over 2 ranks: 3 each, the last block padded by repeating batch 0
    shards = [_rows_of(list(bb.iterate(rows, 8, True, 7, rank=r, world_size=2))) for r in (0, 1)]
    single = _rows_of(list(bb.iterate(rows, 8, True, 7)))
    assert shards[0] == single[:3] and shards[1] == [*single[3:], single[0]]
    assert sorted(_flat(shards[0] + shards[1][:2])) == list(range(40))
    # 4 batches over 2 ranks: disjoint and covering, no padding
    even = [_rows_of(list(bb.iterate(rows[:32], 8, True, 7, rank=r, world_size=2))) for r in (0, 1)]
    flat = [_flat(e) for e in even]
    assert not set(flat[0]) & set(flat[1]) and sorted(flat[0] + flat[1]) == list(range(32))
    # with drop_last the leftover batch is dropped so ranks stay equal: 5 // 2 = 2 each
    assert bb.num_batches(40, 8, drop_last=True, world_size=2) == 2
    # the same batch draws the same negatives on any rank
    assert torch.equal(
        next(iter(bb.iterate(rows, 8, True, 7))).item_index,
        list(bb.iterate(rows, 8, True, 7, rank=1, world_size=2))[-1].item_index,
    )


def test_builder_errors() -> None:
    with pytest.raises(DataError, match="needs a sampler"):
        _builder(negatives=2)
    with pytest.raises(DataError, match="needs histories"):
        _builder(histories=None)
    with pytest.raises(DataError, match="label 'x'"):
        _builder(labels={"x": np.zeros(2, dtype=np.float32)})
    with pytest.raises(DataError, match="item_idx out of range"):
        _builder(item_idx=ITEMS + 10)
    with pytest.raises(DataError, match="needs an rng"):
        _builder(negatives=1, sampler=FixedSampler()).build(np.array([0]))
    with pytest.raises(DataError, match="rank"):
        next(_builder().iterate(np.arange(6), 2, rank=2, world_size=2))
