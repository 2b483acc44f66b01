"""Training windows (SASRec-style, ``examples="windows"``) on hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydrarec.errors import DataError
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.batching import BatchBuilder, UserHistories

# row: user, item, time. User 0 saw 4 (t1), 1 (t2), 2 (t3); user 1 saw 5 (t4), 3 (t5), 0 (t6).
USERS = np.array([0, 0, 1, 0, 1, 1])
ITEMS = np.array([2, 4, 3, 1, 0, 5])
TIMES = np.array([3, 1, 5, 2, 6, 4])
RATING = np.array([5.0, np.nan, 3.0, 4.0, np.nan, 1.0], dtype=np.float32)
N_ITEMS = 7


def test_windows_hand_worked() -> None:
    h = UserHistories(USERS, ITEMS, TIMES)  # places: user 0 -> 0, 1, 2; user 1 -> 3, 4, 5
    ends = h.window_ends(2)  # each user's last place, then 2 back
    assert ends.tolist() == [2, 0, 5, 3]
    inputs, mask, rows, pos = h.windows(ends, 2, 2, pad=-1)
    # window ending at place 2 (user 0): positions predict places 1, 2 (items 1, 2; rows 3, 0)
    # from the items at places 0, 1 (4, 1). Window ending at place 0: position 1 predicts the
    # user's first item from an empty history; position 0 would predict place -1: not a target.
    assert inputs.tolist() == [[4, 1], [-1, -1], [5, 3], [-1, -1]]
    assert mask.tolist() == [[True, True], [False, False], [True, True], [False, False]]
    assert rows.tolist() == [3, 0, 1, 2, 4, 5]
    assert pos.tolist() == [0, 1, 3, 4, 5, 7]  # flat positions w * 2 + j


def test_overlapping_windows_keep_context_but_count_each_target_once() -> None:
    h = UserHistories(USERS, ITEMS, TIMES)
    ends = h.window_ends(1)
    assert ends.tolist() == [2, 1, 0, 5, 4, 3]
    inputs, _, rows, pos = h.windows(ends[:2], 3, 1, pad=-1)
    # stride 1: only the last position is a target, with the 3 items before it as context
    assert inputs.tolist() == [[-1, 4, 1], [-1, -1, 4]]
    assert rows.tolist() == [0, 3] and pos.tolist() == [2, 5]


@pytest.mark.parametrize("n", [1, 3, 8])
def test_an_epoch_of_windows_covers_every_row_once(n: int) -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 9, 200)
    train = np.sort(rng.choice(200, 150, replace=False))
    h = UserHistories(users, rng.integers(0, 30, 200), rng.integers(0, 1000, 200), rows=train)
    for stride in range(1, n + 1):
        _, _, rows, pos = h.windows(h.window_ends(stride), n, stride)
        assert sorted(rows.tolist()) == train.tolist()
        assert len(np.unique(pos)) == len(pos)


def test_stride_one_windows_are_the_histories_of_their_rows() -> None:
    rng = np.random.default_rng(1)
    users = rng.integers(0, 5, 60)
    h = UserHistories(users, rng.integers(0, 20, 60), rng.integers(0, 100, 60))
    inputs, mask, rows, pos = h.windows(h.window_ends(1), 4, 1, pad=-1)
    before, before_mask = h.history_before(rows, 4, pad=-1)
    np.testing.assert_array_equal(inputs, before)
    np.testing.assert_array_equal(mask, before_mask)
    assert pos.tolist() == [w * 4 + 3 for w in range(len(rows))]


def test_bad_strides_are_errors() -> None:
    h = UserHistories(USERS, ITEMS, TIMES)
    with pytest.raises(DataError):
        h.window_ends(0)
    with pytest.raises(DataError, match="stride 3"):
        h.windows(np.array([2]), 2, 3)


def _builder(**kw: object) -> BatchBuilder:
    return BatchBuilder(
        USERS,
        ITEMS,
        {"rating": RATING},
        EntityFeatures(ids=torch.arange(2) + 2),
        EntityFeatures(ids=torch.arange(N_ITEMS) + 2),
        histories=UserHistories(USERS, ITEMS, TIMES),
        history_len=2,
        examples="windows",
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("full", [False, True])
def test_window_batch_rows_are_the_targets(full: bool) -> None:
    b = _builder(full_catalogue=full)
    ends = b.units(np.arange(6))
    assert ends.tolist() == [2, 0, 5, 3]
    batch = b.build(ends)
    assert batch.history.shape == (4, 2) and batch.history_pos is not None
    assert batch.history_pos.tolist() == [0, 1, 3, 4, 5, 7]
    rows = [3, 0, 1, 2, 4, 5]  # as in test_windows_hand_worked
    assert batch.user_index.tolist() == USERS[rows].tolist()
    assert batch.item_index[batch.item_pos].tolist() == ITEMS[rows].tolist()
    hist_items = batch.item_index[batch.history][batch.history_mask]
    assert hist_items.tolist() == [4, 1, 5, 3]
    torch.testing.assert_close(batch.labels["rating"], torch.tensor([4.0, 5.0, 0.0, 3.0, 0.0, 1.0]))
    assert batch.label_mask["rating"].tolist() == [True, True, False, True, False, True]
    moved = batch.to("cpu").history_pos
    assert moved is not None and moved.tolist() == batch.history_pos.tolist()
    rows_builder = BatchBuilder(USERS, ITEMS, {}, b.user_features, b.item_features)
    rows_batch = rows_builder.build(np.arange(6))
    assert rows_batch.to("cpu").history_pos is None  # row examples: each row reads its last state


def test_window_examples_need_histories() -> None:
    with pytest.raises(DataError, match="window"):
        BatchBuilder(
            USERS,
            ITEMS,
            {},
            EntityFeatures(ids=torch.arange(2) + 2),
            EntityFeatures(ids=torch.arange(N_ITEMS) + 2),
            examples="windows",
        )
    with pytest.raises(DataError, match="window_stride"):
        _builder(window_stride=3)


@pytest.mark.parametrize("positions", ["absolute", "relative"])
def test_trimmed_windows_give_the_states_of_the_full_ones(positions: str) -> None:
    """Short sequences in long windows: the all-padding leading columns are cut, and every
    target's state is the one the full-width window computes (issue 19: Beauty's users have ~9
    items, windows 50)."""
    from hydrarec.config import SequenceConfig
    from hydrarec.encoders.sequence import TransformerSequenceEncoder
    from hydrarec.features.batching import trim_windows

    h = UserHistories(USERS, ITEMS, TIMES)
    full = h.windows(h.window_ends(8), 8, 8, pad=0)  # (2, 8): 3 items each, 5 padding columns
    inputs, mask, rows, pos = trim_windows(*full)
    assert inputs.shape == (2, 3) and rows.tolist() == full[2].tolist()  # the first target's column
    torch.manual_seed(0)
    cfg = SequenceConfig(max_len=8, layers=2, heads=2, dropout=0.0, positions=positions)
    enc = TransformerSequenceEncoder(4, cfg).eval()
    table = torch.randn(N_ITEMS, 4)

    def states(x: np.ndarray, m: np.ndarray, p: np.ndarray) -> torch.Tensor:
        s = enc.all_states(table[torch.from_numpy(x)], torch.from_numpy(m))
        return s.flatten(0, 1)[torch.from_numpy(p)]

    torch.testing.assert_close(states(inputs, mask, pos), states(full[0], full[1], full[3]))


def _long_and_short(length_buckets: bool) -> BatchBuilder:
    """40 users with 1..40 items each (window length 40): sequences of every length."""
    rng = np.random.default_rng(0)
    counts = rng.permutation(np.arange(1, 41))
    users = np.repeat(np.arange(40), counts)
    items = rng.integers(0, 30, len(users))
    return BatchBuilder(
        users,
        items,
        {},
        EntityFeatures(ids=torch.arange(40) + 2),
        EntityFeatures(ids=torch.arange(30) + 2),
        histories=UserHistories(users, items),
        history_len=40,
        examples="windows",
        full_catalogue=True,
        length_buckets=length_buckets,
    )


def test_length_buckets_batch_similar_lengths_from_the_same_units(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hydrarec.features import batching

    monkeypatch.setattr(batching, "BUCKET_BATCHES", 8)  # the 5 batches sorted at once
    plain, bucketed = _long_and_short(False), _long_and_short(True)
    units = plain.units(np.arange(len(plain.user_idx)))
    assert len(units) == 40  # one window per user
    a, b = plain.epoch_order(units, 8, seed=3), bucketed.epoch_order(units, 8, seed=3)
    assert sorted(a.tolist()) == sorted(b.tolist()) == sorted(units.tolist())
    np.testing.assert_array_equal(a, np.random.default_rng([3, 0]).permutation(units))
    np.testing.assert_array_equal(b, bucketed.epoch_order(units, 8, seed=3))  # reproducible
    h = plain.histories
    assert h is not None

    def spread(order: np.ndarray) -> int:  # the widest batch's range of window lengths
        lengths = h.window_lengths(order, 40).reshape(-1, 8)
        return int((lengths.max(1) - lengths.min(1)).max())

    # 40 lengths 1..40 in 5 batches of 8: sorted, each batch spans 7; shuffled, about 30
    assert spread(b) == 7 and spread(a) > 20
    widths = [bucketed.build(b[i : i + 8]).history.shape[1] for i in range(0, 40, 8)]
    assert sorted(widths) == [8, 16, 24, 32, 40]  # trimmed to each batch's longest window


@pytest.mark.parametrize("kind", ["transformer", "transformer-relative", "hstu"])
def test_packed_windows_give_the_states_of_the_windows_alone(kind: str) -> None:
    """Short windows packed into shared rows (``pack_windows``): each target's state is the one
    its window computes alone, for every attention encoder (issue 19: the encoder then runs on a
    batch's items, not its padding)."""
    from hydrarec.config import SequenceConfig
    from hydrarec.encoders.sequence import build_sequence_encoder
    from hydrarec.features.batching import pack_windows, trim_windows

    builder = _long_and_short(False)  # 40 users of 1..40 items, windows of 40
    h = builder.histories
    assert h is not None
    inputs, mask, _, pos = trim_windows(*h.windows(h.window_ends(40), 40, 40, pad=0))
    packed, pmask, segments, ppos = pack_windows(inputs, mask, pos, 0)
    assert packed.shape[0] == 21  # spans 1..40 (820 places) in rows of 40: the fewest rows
    assert (segments >= 0).sum() == mask.sum() + 40  # each place of an item, or a first target
    torch.manual_seed(0)
    relative = kind == "transformer-relative"
    cfg = SequenceConfig(
        kind="hstu" if kind == "hstu" else "transformer",
        max_len=40,
        layers=2,
        heads=2,
        dropout=0.0,
        positions="relative" if relative else "absolute",
    )
    enc = build_sequence_encoder(cfg, 8)
    assert enc is not None
    enc.eval()
    table = torch.randn(30, 8)

    def states(x: np.ndarray, m: np.ndarray, p: np.ndarray, seg: np.ndarray | None) -> torch.Tensor:
        segs = None if seg is None else torch.from_numpy(seg)
        s = enc.all_states(table[torch.from_numpy(x)], torch.from_numpy(m), None, segs)
        return s.flatten(0, 1)[torch.from_numpy(p)]

    alone, shared = states(inputs, mask, pos, None), states(packed, pmask, ppos, segments)
    assert alone.abs().sum() > 0
    torch.testing.assert_close(shared, alone)
    # the same packed rows read as one sequence each (no segments) give other states
    assert not torch.allclose(states(packed, pmask, ppos, None), alone)
