"""The contract every encoder passes: feature embeddings, history encoders, item and user towers.

Each case builds a module and runs it on ``n`` hand-built rows; the shared tests check the output
shape, batches of one, gradients, state round-trips, determinism and empty histories. Behaviour
specific to one encoder (pooling, padding and causality, id-dropout, cold rows) follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
import torch
from tests.contracts.helpers import (
    B,
    N,
    assert_grads_everywhere,
    backward_random_projection,
    make_features,
    make_history,
    make_spec,
)
from torch import Tensor, nn

from hydrarec.config import AutoRecConfig, ModelConfig, SequenceConfig, TextConfig
from hydrarec.encoders.autorec import BagEncoder, Decoder, RatingBags, WithBlocks
from hydrarec.encoders.embedding import OOV, FeatureEmbedding
from hydrarec.encoders.sequence import TransformerSequenceEncoder, build_sequence_encoder
from hydrarec.encoders.towers import ItemTower, UserTower
from hydrarec.errors import ConfigError

D = 8  # representation size
KINDS = ["transformer", "transformer-relative", "gru", "lstm", "hstu"]  # kind[-positions]


def seq_cfg(kind: str, max_len: int = N) -> SequenceConfig:
    kind, _, positions = kind.partition("-")
    return SequenceConfig(
        kind=kind,  # type: ignore[arg-type]
        max_len=max_len,
        layers=2,
        heads=2,
        dropout=0.1,
        positions=positions or "absolute",  # type: ignore[arg-type]
    )


def model_cfg(kind: str = "transformer", id_dropout: float = 0.0, **kw: object) -> ModelConfig:
    seq = seq_cfg(kind) if kind != "none" else SequenceConfig(kind="none")
    text = TextConfig(id_dropout=id_dropout)
    return ModelConfig(dim=D, embedding_dim=4, tower_hidden=[16], sequence=seq, text=text, **kw)  # type: ignore[arg-type]


def seq_encoder(kind: str, max_len: int = N) -> nn.Module:
    enc = build_sequence_encoder(seq_cfg(kind, max_len), D)
    assert enc is not None
    return enc


@dataclass
class Case:
    build: Callable[[], nn.Module]
    run: Callable[[nn.Module, int], Tensor]  # (module, rows) -> output
    out_dim: int
    history: bool = False  # reads a history (empty-history tests apply)


SPEC, TEXT_SPEC = make_spec(), make_spec(text_dim=10)


def _features(spec=SPEC):  # type: ignore[no-untyped-def]
    return lambda m, n: m(make_features(spec, n))


def _with_history(m: nn.Module, n: int) -> Tensor:
    seq, mask = make_history(n, N, D)
    return m(make_features(SPEC, n), seq, mask)


def _history_only(m: nn.Module, n: int) -> Tensor:
    return m(*make_history(n, N, D))


AUTOREC = AutoRecConfig(hidden=5, input_dropout=0.2)
# every id 2..19 rated by three ids of the other side, so no row of make_features is cold
_AR_ITEMS = torch.arange(2, SPEC.n_ids).repeat_interleave(3).numpy()  # (54,)
_AR_USERS = 2 + (_AR_ITEMS + torch.arange(3).repeat(SPEC.n_ids - 2).numpy()) % 18  # (54,)
_AR_RATINGS = (_AR_ITEMS % 5 + 1).astype("float32")
ITEM_BAGS = RatingBags.from_pairs(_AR_ITEMS, _AR_USERS, _AR_RATINGS, SPEC.n_ids)
USER_BAGS = RatingBags.from_pairs(_AR_USERS, _AR_ITEMS, _AR_RATINGS, SPEC.n_ids)


def _item_autorec() -> nn.Module:  # the item side of I-AutoRec and of U-AutoRec
    blocks = [BagEncoder(SPEC.n_ids, 20, AUTOREC, ITEM_BAGS), Decoder(SPEC.n_ids, AUTOREC)]
    return WithBlocks(ItemTower(SPEC, model_cfg()), blocks)


def _user_autorec() -> nn.Module:  # the user side of both
    blocks = [Decoder(20, AUTOREC), BagEncoder(SPEC.n_ids, 20, AUTOREC, USER_BAGS)]
    return WithBlocks(UserTower(SPEC, model_cfg("none")), blocks)


CASES: dict[str, Case] = {
    "embedding-mean": Case(lambda: FeatureEmbedding(SPEC, 6, 4, "mean"), _features(), 6 + 4 * 4),
    "embedding-sum-no-ids": Case(
        lambda: FeatureEmbedding(SPEC, 6, 4, "sum", use_ids=False), _features(), 4 * 4
    ),
    "item-tower": Case(lambda: ItemTower(SPEC, model_cfg()), _features(), D),
    "item-tower-text": Case(
        lambda: ItemTower(TEXT_SPEC, model_cfg(id_dropout=0.3)), _features(TEXT_SPEC), D
    ),
    "user-tower-none": Case(lambda: UserTower(SPEC, model_cfg("none")), _with_history, D),
    "item-tower-autorec": Case(_item_autorec, _features(), D + 2 * (AUTOREC.hidden + 1)),
    "user-tower-autorec": Case(_user_autorec, _with_history, D + 2 * (AUTOREC.hidden + 1)),
    **{
        f"user-tower-{k}": Case(lambda k=k: UserTower(SPEC, model_cfg(k)), _with_history, D, True)  # type: ignore[misc]
        for k in KINDS
    },
    **{
        f"sequence-{k}": Case(lambda k=k: seq_encoder(k), _history_only, D, True)  # type: ignore[misc]
        for k in KINDS
    },
}
HISTORY_CASES = [name for name, c in CASES.items() if c.history]


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return CASES[name].build()


# ---- the shared contract -------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_output_shape(name: str) -> None:
    out = CASES[name].run(build(name), B)
    assert out.shape == (B, CASES[name].out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_batch_of_one(name: str, train: bool) -> None:
    out = CASES[name].run(build(name).train(train), 1)
    assert out.shape == (1, CASES[name].out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_every_parameter(name: str) -> None:
    # Eval mode: no dropout, no id-dropout; the batch has an empty history row, so this also
    # checks that fully masked attention rows give no NaN gradients.
    module = build(name).eval()
    backward_random_projection(CASES[name].run(module, B))
    assert_grads_everywhere(module)


def test_the_gradient_check_can_fail() -> None:
    """The check above fails for a parameter the output does not depend on, and the projection
    reaches one behind a final LayerNorm, which ``out.sum()`` does not: a normalised row sums to
    a constant, so the sum's gradient upstream is rounding noise (issue 21)."""
    torch.manual_seed(0)
    behind_norm = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6, elementwise_affine=False))
    x = torch.randn(3, 4)
    behind_norm(x).sum().backward()
    grad = behind_norm[0].weight.grad
    assert grad is not None and grad.abs().max() < 1e-5  # noise
    behind_norm.zero_grad(set_to_none=True)
    backward_random_projection(behind_norm(x))
    grad = behind_norm[0].weight.grad
    assert grad is not None and grad.abs().max() > 1e-2

    disconnected = nn.Linear(4, 6)
    disconnected.register_parameter("unused", nn.Parameter(torch.ones(2)))
    backward_random_projection(disconnected(x))
    with pytest.raises(AssertionError, match="unused: no gradient"):
        assert_grads_everywhere(disconnected)


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip(name: str) -> None:
    a, b = build(name, seed=0).eval(), build(name, seed=1).eval()
    run = CASES[name].run
    assert not torch.equal(run(a, B), run(b, B))
    b.load_state_dict(a.state_dict())
    assert torch.equal(run(a, B), run(b, B))


@pytest.mark.parametrize("name", CASES)
def test_deterministic_under_seed(name: str) -> None:
    outs = []
    for _ in range(2):
        module = build(name, seed=5).train()  # dropout (and id-dropout) on
        torch.manual_seed(6)
        outs.append(CASES[name].run(module, B))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", HISTORY_CASES)
def test_empty_histories_are_finite(name: str, train: bool) -> None:
    module = build(name).train(train)
    seq = torch.randn(3, N, D)  # (3, N, D)
    mask = torch.zeros(3, N, dtype=torch.bool)  # (3, N): nobody has a history
    out = (
        module(make_features(SPEC, 3), seq, mask) if name.startswith("user") else module(seq, mask)
    )
    assert torch.isfinite(out).all()
    out.sum().backward()
    for p in module.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


# ---- history encoders: padding, causality --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_empty_history_gives_zeros(kind: str) -> None:
    out = seq_encoder(kind).eval()(torch.randn(2, N, D), torch.zeros(2, N, dtype=torch.bool))
    assert torch.equal(out, torch.zeros(2, D))


@pytest.mark.parametrize("kind", KINDS)
def test_padded_positions_do_not_matter(kind: str) -> None:
    enc = seq_encoder(kind).eval()
    seq, mask = make_history(B, N, D)
    noisy = torch.where(mask.unsqueeze(-1), seq, torch.randn_like(seq) * 100)  # (B, N, D)
    torch.testing.assert_close(enc(seq, mask), enc(noisy, mask))


@pytest.mark.parametrize("kind", KINDS)
def test_amount_of_left_padding_does_not_matter(kind: str) -> None:
    enc = seq_encoder(kind, max_len=N + 3).eval()
    seq, mask = make_history(B, N, D)
    wider = torch.cat([torch.randn(B, 3, D), seq], dim=1)  # (B, N + 3, D)
    wider_mask = torch.cat([torch.zeros(B, 3, dtype=torch.bool), mask], dim=1)  # (B, N + 3)
    torch.testing.assert_close(enc(seq, mask), enc(wider, wider_mask))


@pytest.mark.parametrize("kind", KINDS)
def test_output_depends_on_every_real_item(kind: str) -> None:
    enc = seq_encoder(kind).eval()
    seq, mask = make_history(B, N, D)
    for j in range(N):
        changed = seq.clone()
        changed[0, j] += torch.randn(D)  # row 0 is full: position j is real
        assert not torch.allclose(enc(seq, mask)[0], enc(changed, mask)[0]), f"position {j}"


def test_transformer_is_causal() -> None:
    enc = seq_encoder("transformer").eval()
    assert isinstance(enc, TransformerSequenceEncoder)
    seq, mask = make_history(B, N, D)
    base = enc.states(seq, mask)  # (B, N, D)
    for j in range(N):
        changed = seq.clone()
        changed[0, j] += torch.randn(D)  # not a constant shift: LayerNorm would erase it
        states = enc.states(changed, mask)
        torch.testing.assert_close(states[0, :j], base[0, :j])  # the past cannot see the future
        assert not torch.allclose(states[0, j:], base[0, j:])


@pytest.mark.parametrize("kind", KINDS)
def test_all_states_are_causal_and_zero_at_padding(kind: str) -> None:
    """Window training (issue 8): state j predicts item j + 1, so it must not read item j + 1."""
    enc = seq_encoder(kind).eval()
    seq, mask = make_history(B, N, D)
    base = enc.all_states(seq, mask)  # (B, N, D)
    assert torch.equal(base[~mask], torch.zeros_like(base[~mask]))
    noisy = torch.where(mask.unsqueeze(-1), seq, torch.randn_like(seq) * 100)  # (B, N, D)
    torch.testing.assert_close(enc.all_states(noisy, mask), base)
    for j in range(N):
        changed = seq.clone()
        changed[0, j] += torch.randn(D)  # row 0 is full: position j is real
        states = enc.all_states(changed, mask)
        torch.testing.assert_close(states[0, :j], base[0, :j])  # the past cannot see the future
        assert not torch.allclose(states[0, j:], base[0, j:]), f"position {j}"


@pytest.mark.parametrize("kind", KINDS)
def test_last_of_all_states_is_the_output(kind: str) -> None:
    enc = seq_encoder(kind).eval()
    seq, mask = make_history(B, N, D)  # right-aligned, one empty row
    torch.testing.assert_close(enc.all_states(seq, mask)[:, -1], enc(seq, mask))


@pytest.mark.parametrize("kind", KINDS)
def test_user_tower_reads_the_window_state_of_each_row(kind: str) -> None:
    tower = UserTower(SPEC, model_cfg(kind)).eval()
    seq, mask = make_history(B, N, D)
    feats = make_features(SPEC, 3)
    pos = torch.tensor([N - 1, 2 * N - 1, 2 * N + 2])  # rows 0 and 1: last states; row 2: mid
    out = tower(feats, seq, mask, pos)  # (3, D)
    torch.testing.assert_close(out[:2], tower(feats.gather(torch.arange(2)), seq[:2], mask[:2]))
    changed = seq.clone()
    changed[2, 3:] += torch.randn(N - 3, D)  # after row 2's position 2: invisible to it
    torch.testing.assert_close(tower(feats, changed, mask, pos)[2], out[2])


@pytest.mark.parametrize("kind", ["transformer", "transformer-relative", "gru"])
def test_tail_states_are_the_last_states(kind: str) -> None:
    """``all_states(tail=k)`` (window training: the last block runs the targets only) equals
    the last k of every position's states, with two blocks."""
    enc = seq_encoder(kind).eval()  # two blocks (seq_cfg)
    seq, mask = make_history(B, N, D)
    full = enc.all_states(seq, mask)  # (B, N, D)
    for k in (1, 3, N):
        torch.testing.assert_close(enc.all_states(seq, mask, k), full[:, N - k :])


def test_relative_positions_give_every_position_its_serving_state() -> None:
    """With relative positions, window position j is exactly the last state of the history that
    ends at j (issue 8: window training then matches evaluation)."""
    enc = seq_encoder("transformer-relative").eval()
    seq, mask = make_history(B, N, D)
    states = enc.all_states(seq, mask)  # (B, N, D)
    for j in range(N):
        torch.testing.assert_close(states[:, j], enc(seq[:, : j + 1], mask[:, : j + 1]))


def test_transformer_rejects_histories_longer_than_max_len() -> None:
    with pytest.raises(ValueError, match="max_len"):
        seq_encoder("transformer")(torch.randn(2, N + 1, D), torch.ones(2, N + 1, dtype=torch.bool))


def test_sequence_factory() -> None:
    assert build_sequence_encoder(SequenceConfig(kind="none"), D) is None
    with pytest.raises(ConfigError, match="heads"):
        build_sequence_encoder(SequenceConfig(kind="transformer", heads=3), D)
    bad = SequenceConfig.model_construct(kind="bert")  # type: ignore[arg-type]  # skips the Literal check
    with pytest.raises(ConfigError, match="transformer, gru, lstm"):
        build_sequence_encoder(bad, D)


# ---- feature embedding ---------------------------------------------------------------------


@pytest.mark.parametrize(("pooling", "expected"), [("mean", [2.0, 4.0]), ("sum", [4.0, 8.0])])
def test_multi_hot_pooling_hand_worked(pooling: str, expected: list[float]) -> None:
    # Token 2 -> [1, 2], token 3 -> [3, 6]. Row [2, 3, 0, 0]: mean [2, 4], sum [4, 8].
    # Row [0, 0, 0, 0] (no tokens): zeros, not NaN, for both poolings.
    spec = make_spec(numeric=False)
    spec = replace(spec, categorical={})
    emb = FeatureEmbedding(spec, 3, 2, pooling, use_ids=False)  # type: ignore[arg-type]
    with torch.no_grad():
        table = emb.multi_hot[0]
        assert isinstance(table, nn.Embedding)
        table.weight[2:4] = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    tokens = torch.tensor([[2, 3, 0, 0], [0, 0, 0, 0]])
    feats = make_features(spec, 2)
    out = emb(replace(feats, multi_hot={"tags": tokens}))
    torch.testing.assert_close(out, torch.tensor([expected, [0.0, 0.0]]))


def test_padding_and_oov_rows_start_at_zero() -> None:
    emb = FeatureEmbedding(SPEC, 6, 4)
    assert emb.ids is not None
    tables = [emb.ids, *emb.categorical, *emb.multi_hot]
    for table in tables:
        assert isinstance(table, nn.Embedding)
        assert torch.equal(table.weight[:2], torch.zeros(2, table.embedding_dim))


def test_nothing_to_embed_is_an_error() -> None:
    spec = replace(make_spec(numeric=False, multi_hot=False), categorical={})
    with pytest.raises(ValueError, match="nothing to embed"):
        FeatureEmbedding(spec, 6, 4, use_ids=False)


# ---- item tower: text, id-dropout, cold items ----------------------------------------------


def test_id_dropout_is_the_cold_item_path() -> None:
    # With every id dropped, training output equals the eval output of the same items marked
    # OOV: a dropped id and an unseen id take one path. In eval, no id is dropped.
    tower = ItemTower(TEXT_SPEC, model_cfg(id_dropout=1.0, dropout=0.0))
    feats = make_features(TEXT_SPEC, B)
    cold = replace(feats, ids=torch.full((B,), OOV))
    dropped = tower.train()(feats)
    tower.eval()
    torch.testing.assert_close(dropped, tower(cold))
    assert not torch.allclose(tower(feats), tower(cold))


def test_cold_item_is_described_by_its_text() -> None:
    tower = ItemTower(TEXT_SPEC, model_cfg()).eval()
    cold = replace(make_features(TEXT_SPEC, B), ids=torch.full((B,), OOV))
    other_text = replace(cold, text=torch.randn(B, TEXT_SPEC.text_dim))
    assert not torch.allclose(tower(cold), tower(other_text))


def test_text_tower_needs_text() -> None:
    tower = ItemTower(TEXT_SPEC, model_cfg())
    with pytest.raises(ValueError, match="text"):
        tower(replace(make_features(TEXT_SPEC, B), text=None))


# ---- user tower: no sequence, cold users, long histories -----------------------------------


def test_user_tower_without_sequence_ignores_history() -> None:
    tower = UserTower(SPEC, model_cfg("none")).eval()
    feats = make_features(SPEC, B)
    seq, mask = make_history(B, N, D)
    torch.testing.assert_close(tower(feats), tower(feats, seq, mask))


@pytest.mark.parametrize("kind", KINDS)
def test_cold_user_is_described_by_its_history(kind: str) -> None:
    tower = UserTower(SPEC, model_cfg(kind)).eval()
    feats = replace(make_features(SPEC, B), ids=torch.full((B,), OOV))
    seq, mask = make_history(B, N, D)
    assert not torch.allclose(tower(feats, seq, mask), tower(feats, torch.randn_like(seq), mask))


@pytest.mark.parametrize("kind", KINDS)
def test_user_tower_reads_the_most_recent_max_len_items(kind: str) -> None:
    tower = UserTower(SPEC, model_cfg(kind)).eval()
    feats = make_features(SPEC, B)
    seq, mask = make_history(B, N, D)
    older = torch.cat([torch.randn(B, 2, D), seq], dim=1)  # (B, N + 2, D): two older items
    older_mask = torch.cat([torch.ones(B, 2, dtype=torch.bool), mask], dim=1)  # (B, N + 2)
    torch.testing.assert_close(tower(feats, seq, mask), tower(feats, older, older_mask))


def test_user_tower_with_sequence_needs_history() -> None:
    with pytest.raises(ValueError, match="history"):
        UserTower(SPEC, model_cfg("gru"))(make_features(SPEC, B))
