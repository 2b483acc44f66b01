"""Window examples (SASRec-style training, issue 8): one causal pass, every position a target."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.integration.tiny import tiny_config, tiny_raw
from torch import Tensor, nn

from hydrarec.config import ModelConfig, SequenceConfig, config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.encoders.towers import ItemTower, UserTower
from hydrarec.errors import ConfigError
from hydrarec.features.batch import Batch, EntityFeatures, EntitySpec
from hydrarec.features.batching import BatchBuilder, UserHistories
from hydrarec.io.progress import Progress
from hydrarec.model.multitask import MultiTaskRecommender
from hydrarec.run.build import build_model
from hydrarec.run.data import make_train_data
from hydrarec.run.train import train
from hydrarec.tasks.retrieval import RetrievalTask

QUIET = Progress(enabled=False)


class RunningSum(nn.Module):
    """User state at position j = sum of the window's real item vectors up to j (causal)."""

    def forward(self, feats: EntityFeatures, seq: Tensor, mask: Tensor, pos: Tensor) -> Tensor:
        states = (seq * mask.unsqueeze(-1)).cumsum(dim=1)  # (W, N, D)
        return states.flatten(0, 1)[pos]  # (R, D)


class FixedItems(nn.Module):
    def __init__(self, vectors: Tensor) -> None:
        super().__init__()
        self.vectors = nn.Parameter(vectors)

    def forward(self, feats: EntityFeatures) -> Tensor:
        return self.vectors[feats.ids]  # (U, D)


def test_window_loss_hand_worked() -> None:
    # Items a, b, c with vectors [1, 0], [0, 1], [1, 1]; one window [pad, a, b] predicting
    # [a, b, c]; temperature 1, full softmax. States: [0, 0], a, a + b.
    #   position 0: logits [0, 0, 0], target a: log 3
    #   position 1: logits [1, 0, 1], target b: log(2e + 1) - 0
    #   position 2: logits [1, 1, 2], target c: log(2e + e^2) - 2
    e = math.e
    expected = (math.log(3) + math.log(2 * e + 1) + math.log(2 * e + e * e) - 2) / 3
    model = MultiTaskRecommender(
        RunningSum(),
        FixedItems(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])),
        nn.Identity(),
        [RetrievalTask("retrieval", temperature=1.0, logq=True, full_softmax=True)],
    )
    batch = Batch(
        user_index=torch.zeros(3, dtype=torch.long),
        users=EntityFeatures(ids=torch.full((3,), 2)),
        item_index=torch.arange(3),
        items=EntityFeatures(ids=torch.arange(3)),
        item_logq=torch.zeros(3),
        item_pos=torch.tensor([0, 1, 2]),  # targets a, b, c
        history=torch.tensor([[0, 0, 1]]),  # (1, 3): [pad, a, b]
        history_mask=torch.tensor([[False, True, True]]),
        history_pos=torch.tensor([0, 1, 2]),
    )
    assert model.losses(batch)["retrieval"].item() == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def tiny_data():  # type: ignore[no-untyped-def]
    cfg = tiny_config(examples="windows")
    data = make_train_data(cfg, load_dataset(cfg.data))
    torch.manual_seed(0)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    return data, model.eval()


def _builder(data, **kw) -> BatchBuilder:  # type: ignore[no-untyped-def]
    b = data.builder
    return BatchBuilder(
        b.user_idx,
        b.item_idx,
        data.labels,
        data.users,
        data.items,
        histories=b.histories,
        history_len=b.history_len,
        full_catalogue=b.full_catalogue,
        **kw,
    )


def test_stride_one_windows_give_every_task_the_row_losses(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """With stride 1 every window is one row's history: all four tasks see the same pairs."""
    data, model = tiny_data
    windows = _builder(data, examples="windows", window_stride=1)
    ends = windows.units(data.split.train)[:40]
    rows = windows.histories.windows(ends, windows.history_len, 1)[2]  # the targets' rows
    with torch.no_grad():
        got = model.losses(windows.build(ends))
        want = model.losses(_builder(data).build(rows))
    assert set(got) == {"retrieval", "rating", "like", "genres"}
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)


def test_only_target_positions_get_gradient(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """Padding and context-only positions contribute nothing to the loss."""
    data, model = tiny_data
    windows = _builder(data, examples="windows", window_stride=5)  # 3 context positions of 8
    batch = windows.build(windows.units(data.split.train)[:30])
    assert batch.history_pos is not None and (~batch.history_mask).any()
    seq = model.user_encoder.sequence
    captured: list[Tensor] = []
    original = seq.all_states

    def keep(s: Tensor, m: Tensor, tail: int | None = None, seg: Tensor | None = None) -> Tensor:
        out = original(s, m, tail, seg)
        out.retain_grad()
        captured.append(out)
        return out

    seq.all_states = keep
    try:
        sum(model.losses(batch).values()).backward()  # type: ignore[union-attr]
    finally:
        del seq.all_states
    states = captured[0]  # (W, k, D): the last block ran the last k = 5 positions only
    n, k = batch.history.shape[1], states.shape[1]
    assert k == 5
    grad = states.grad.flatten(0, 1).abs().sum(-1)  # (W * k,)
    is_target = torch.zeros_like(grad, dtype=torch.bool)
    pos = batch.history_pos
    is_target[pos // n * k + pos % n - (n - k)] = True
    assert grad[~is_target].eq(0).all() and grad[is_target].gt(0).all()
    model.zero_grad()
    # the tower's rows are the states a full pass gives at history_pos (not only the same set)
    tower = model.user_encoder
    with torch.no_grad():
        items = model.encode_items(batch.items)
        history = items[batch.history]
        full = seq.all_states(history, batch.history_mask).flatten(0, 1)[pos]  # (R, D)
        x = tower.features(batch.users)
        want = tower.mlp(torch.cat([x, full], dim=-1))
        got = tower(batch.users, history, batch.history_mask, pos)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_packed_windows_train_the_same_losses(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """``train.pack_windows``: fewer encoder rows, and every task's loss that of the windows one
    by one (eval mode: no dropout draw differs)."""
    data, model = tiny_data
    plain = _builder(data, examples="windows")
    packed = _builder(data, examples="windows", pack_windows=True)
    ends = plain.units(data.split.train)[:40]
    a, b = plain.build(ends), packed.build(ends)
    assert a.history_segments is None and b.history_segments is not None
    assert b.history.shape[0] < a.history.shape[0]
    assert b.user_index.tolist() == a.user_index.tolist()
    with torch.no_grad():
        got, want = model.losses(b), model.losses(a)
    assert set(got) == {"retrieval", "rating", "like", "genres"}
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)


def test_planted_next_item_pattern_is_learned() -> None:
    """Every user walks the catalogue in steps of +1 from a random start: the next item after
    the last one must come out on top, for sequences never seen whole in training."""
    n_items, n_users, length, window = 12, 40, 16, 6
    rng = np.random.default_rng(0)
    start = rng.integers(0, n_items, n_users)
    users = np.repeat(np.arange(n_users), length)
    items = (start[:, None] + np.arange(length)).ravel() % n_items
    histories = UserHistories(users, items, n_users=n_users)
    ids = EntityFeatures(ids=torch.arange(n_users) + 2)
    item_ids = EntityFeatures(ids=torch.arange(n_items) + 2)
    builder = BatchBuilder(
        users, items, {}, ids, item_ids, histories=histories, history_len=window,
        full_catalogue=True, examples="windows",
    )  # fmt: skip
    cfg = ModelConfig(
        dim=16, embedding_dim=8, tower_hidden=[32], dropout=0.0,
        sequence=SequenceConfig(max_len=window, layers=1, heads=2, dropout=0.0),
    )  # fmt: skip
    torch.manual_seed(0)
    model = MultiTaskRecommender(
        UserTower(EntitySpec(n_ids=n_users + 2), cfg),
        ItemTower(EntitySpec(n_ids=n_items + 2), cfg),
        nn.Identity(),
        [RetrievalTask("retrieval", temperature=0.1, logq=False, full_softmax=True)],
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(30):
        for batch in builder.iterate(builder.units(np.arange(len(users))), 16, seed=epoch):
            loss = model.losses(batch)["retrieval"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        hist, mask = histories.last_n(np.arange(n_users), window)
        vecs = model.encode_items(item_ids)
        user = model.encode_users(ids, vecs[torch.from_numpy(hist)], torch.from_numpy(mask))
        top = (user @ vecs.T).argmax(dim=1).numpy()
    assert ((top == (start + length) % n_items).mean()) >= 0.9


def test_train_with_windows_end_to_end(tmp_path: Path) -> None:
    run = train(tiny_config(examples="windows", window_stride=4), tmp_path / "w", progress=QUIET)
    assert run.metrics["test"]["retrieval/ndcg@10"] > 0
    assert {"rating/rmse", "like/auc", "genres/loss"} <= set(run.metrics["test"])


def test_windows_need_a_history_encoder() -> None:
    raw = tiny_raw(examples="windows")
    raw["model"]["sequence"] = {"kind": "none"}
    with pytest.raises(ConfigError, match=r"train\.examples"):
        config_from_dict(raw)
    raw = tiny_raw(examples="windows", window_stride=9)  # max_len is 8
    with pytest.raises(ConfigError, match="window_stride 9"):
        config_from_dict(raw)


def test_packed_windows_need_an_attention_encoder() -> None:
    """A recurrent encoder reads a row as one sequence: packing is refused with the fix."""
    raw = tiny_raw(examples="windows", pack_windows=True)
    raw["model"]["sequence"]["kind"] = "gru"
    with pytest.raises(ConfigError, match="pack_windows = false"):
        config_from_dict(raw)


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_user_vectors_by_length_are_those_of_full_width_batches(kind: str) -> None:
    """Evaluation encodes users shortest history first, each batch cut to its longest history:
    every user's vector is the one a full-width batch in the given order computes."""
    from hydrarec.evaluation.evaluate import encode_items, encode_users, split_user_vectors

    raw = tiny_raw(examples="windows")
    raw["model"]["sequence"].update(kind=kind, max_len=20)
    cfg = config_from_dict(raw)
    data = make_train_data(cfg, load_dataset(cfg.data))
    torch.manual_seed(0)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    known = data.builder.histories
    n = cfg.model.sequence.max_len
    users = np.random.default_rng(0).permutation(known.n_users)[:50]
    cpu = torch.device("cpu")
    items = encode_items(model, data.items, cpu)
    got = split_user_vectors(model, data.users, users, known, n, items, cpu, batch_size=16)
    hist, mask = known.last_n(users, n)
    assert 0 < mask.sum(1).min() < n // 2  # short histories: their batch is cut
    want = encode_users(model, data.users, users, hist, mask, items, cpu)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
