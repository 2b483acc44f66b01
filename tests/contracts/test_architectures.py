"""The contract every multi-task architecture passes (after implicit's recommender_base_test.py).

Parametrised over the registry: adding an architecture to ``ARCHITECTURES`` runs all of this on it.
"""

from __future__ import annotations

import typing

import pytest
import torch
from tests.contracts.helpers import B, assert_grads_everywhere

from hydrarec.architectures import AITM, ARCHITECTURES, Architecture, MMoE, build_architecture
from hydrarec.architectures.layers import mix, mix_tasks, mlp
from hydrarec.architectures.pairs import PAD, ItemSideCache, Pairs
from hydrarec.config import ArchitectureConfig
from hydrarec.errors import ConfigError

IN_DIM = 12
NAMES = list(ARCHITECTURES)
TASKS = [1, 2, 3]


HIDDEN = [16, 8]  # the experts' / bottom's widths of make_arch; the fixture below sets it


@pytest.fixture(autouse=True, params=[[16, 8], [16]], ids=["two-layer", "one-layer"])
def hidden(request: pytest.FixtureRequest) -> typing.Iterator[list[int]]:
    """Every test runs with two-layer and with one-layer experts: one hidden layer (the
    default config) takes the fused path (all experts and gates in one product)."""
    global HIDDEN
    HIDDEN = request.param
    yield request.param
    HIDDEN = [16, 8]


def make_arch(
    name: str, n_tasks: int, seed: int = 0, in_dim: int = IN_DIM, **cfg: typing.Any
) -> Architecture:
    base = {"hidden": HIDDEN, "tower": [6], "experts": 3, "task_experts": 2, "levels": 2}
    torch.manual_seed(seed)
    return build_architecture(ArchitectureConfig(name=name, **{**base, **cfg}), in_dim, n_tasks)


def inputs(n: int = B, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, IN_DIM, generator=torch.Generator().manual_seed(seed))  # (n, IN_DIM)


def test_registry_matches_config_names() -> None:
    allowed = typing.get_args(ArchitectureConfig.model_fields["name"].annotation)
    assert set(ARCHITECTURES) == set(allowed)


def test_unknown_name_is_a_config_error_naming_the_allowed() -> None:
    cfg = ArchitectureConfig.model_construct(name="moe-of-moes")  # type: ignore[arg-type]  # skips the Literal check
    with pytest.raises(ConfigError, match="moe-of-moes") as err:
        build_architecture(cfg, IN_DIM, 2)
    for name in ARCHITECTURES:
        assert name in str(err.value)


@pytest.mark.parametrize("n_tasks", TASKS)
@pytest.mark.parametrize("name", NAMES)
def test_one_output_per_task(name: str, n_tasks: int) -> None:
    arch = make_arch(name, n_tasks)
    out = arch(inputs())
    assert isinstance(out, list) and len(out) == n_tasks
    assert arch.out_dim == 6
    for o in out:
        assert o.shape == (B, arch.out_dim)
        assert torch.isfinite(o).all()


@pytest.mark.parametrize("name", NAMES)
def test_zero_tasks(name: str) -> None:
    assert make_arch(name, 0)(inputs()) == []


@pytest.mark.parametrize("rows", [0, 1])  # an empty batch and a batch of one
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_tiny_batches(name: str, train: bool, rows: int) -> None:
    arch = make_arch(name, 2).train(train)
    out = arch(inputs(rows))
    assert [o.shape for o in out] == [(rows, arch.out_dim)] * 2


@pytest.mark.parametrize("n_tasks", TASKS)
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str, n_tasks: int) -> None:
    arch = make_arch(name, n_tasks, dropout=0.0)
    sum(o.sum() for o in arch(inputs())).backward()  # type: ignore[union-attr]
    assert_grads_everywhere(arch)


@pytest.mark.parametrize("name", NAMES)
def test_rows_are_independent(name: str) -> None:
    # No batch statistics: a row's output does not depend on the other rows (no BatchNorm).
    arch = make_arch(name, 2).eval()
    x = inputs()
    full = arch(x)
    alone = arch(x[2:3])
    for f, a in zip(full, alone, strict=True):
        torch.testing.assert_close(f[2:3], a)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    a = make_arch(name, 3, seed=0).eval()
    b = make_arch(name, 3, seed=1).eval()
    x = inputs()
    assert not torch.equal(a(x)[0], b(x)[0])  # different seeds, different weights
    b.load_state_dict(a.state_dict())
    for oa, ob in zip(a(x), b(x), strict=True):
        assert torch.equal(oa, ob)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name: str) -> None:
    outs = []
    for _ in range(2):
        arch = make_arch(name, 2, seed=3).train()  # dropout on: the seed must fix it too
        torch.manual_seed(4)
        outs.append(arch(inputs()))
    for o1, o2 in zip(*outs, strict=True):
        assert torch.equal(o1, o2)


@pytest.mark.parametrize("name", NAMES)
def test_empty_width_lists(name: str) -> None:
    # tower = [] means the shared part's output is the task vector; hidden = [] likewise.
    arch = make_arch(name, 2, hidden=[], tower=[])
    out = arch(inputs())
    assert arch.out_dim == IN_DIM
    assert [o.shape for o in out] == [(B, IN_DIM)] * 2


@pytest.mark.parametrize("cross", [True, False])  # [user, item, user * item] or [user, item]
@pytest.mark.parametrize("widths", [{}, {"hidden": [8]}, {"hidden": [], "tower": []}])
@pytest.mark.parametrize("name", NAMES)
def test_factored_pairs_equal_the_dense_input(
    name: str, widths: dict[str, list[int]], cross: bool
) -> None:
    # stage-two re-ranking feeds Pairs (one matrix per user, all first layers in one product)
    # instead of the materialised pair input: the outputs must be the same
    d, n_items = IN_DIM // 3, 7
    parts = 3 if cross else 2
    arch = make_arch(name, 3, in_dim=parts * d, **widths).eval()
    gen = torch.Generator().manual_seed(2)
    table, user = torch.randn(n_items, d, generator=gen), torch.randn(4, d, generator=gen)
    cand = torch.randint(0, n_items, (4, 5), generator=gen)
    cache = ItemSideCache(table)
    for _ in range(2):  # the second call reuses the cache's stacked weights
        pairs = Pairs(user, cand, cache, cross=cross)
        got = arch(pairs)
        want = arch(pairs.dense())
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    item = table[cand]  # (4, 5, d)
    u = user[:, None, :].expand_as(item)
    dense = torch.cat([u, item, u * item][:parts], -1).reshape(20, parts * d)
    assert torch.equal(pairs.dense(), dense)


def test_factored_linear_hand_worked() -> None:
    # W = [w_u | w_i | w_x] = [1 | 2 | 3], bias 0.5; user 2, items [1, -1]
    layer = torch.nn.Linear(3, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        layer.bias.fill_(0.5)
    pairs = Pairs(
        torch.tensor([[2.0]]), torch.tensor([[0, 1]]), ItemSideCache(torch.tensor([[1.0], [-1.0]]))
    )
    # 1*2 + 2*1 + 3*2 + 0.5 = 10.5; 1*2 - 2 - 3*2 + 0.5 = -5.5
    assert pairs.linear(layer).flatten().tolist() == [10.5, -5.5]
    assert pairs.dots().tolist() == [2.0, -2.0]  # u . i, computed on its own
    # asked for up front, u . i rides on the first product as one more column
    with_dots = Pairs(
        torch.tensor([[2.0]]),
        torch.tensor([[0, 1]]),
        ItemSideCache(torch.tensor([[1.0], [-1.0]])),
        dots=True,
    )
    assert with_dots.linear(layer).flatten().tolist() == [10.5, -5.5]
    assert with_dots._dots is not None and with_dots._dots.tolist() == [2.0, -2.0]
    assert with_dots.dots().tolist() == [2.0, -2.0]
    assert with_dots.linear(layer).flatten().tolist() == [10.5, -5.5]  # later products: as usual
    with pytest.raises(ValueError, match="in_features 3"):
        pairs.linear(torch.nn.Linear(4, 1))


@pytest.mark.parametrize(
    ("outputs", "dots", "row"), [(1, False, 16), (16, False, 16), (16, True, 32)]
)
def test_factored_product_rows_are_padded(outputs: int, dots: bool, row: int) -> None:
    # the product is written PAD-aligned; what the caller gets is the layers' columns alone, as
    # a view of it (no copy), equal to the layer over the dense input
    layer = torch.nn.Linear(6, outputs)
    gen = torch.Generator().manual_seed(0)
    cache = ItemSideCache(torch.randn(5, 2, generator=gen))
    user, cand = torch.randn(3, 2, generator=gen), torch.tensor([[0, 1], [2, 3], [4, 0]])
    pairs = Pairs(user, cand, cache, dots=dots)
    out = pairs.linear(layer)
    assert PAD == 16 and out.shape == (6, outputs) and out.stride() == (row, 1)
    torch.testing.assert_close(out, layer(pairs.dense()))
    item = cache.item_vectors[cand]  # (3, 2, 2)
    torch.testing.assert_close(pairs.dots(), (user[:, None, :] * item).sum(-1).flatten())


def test_mix_tasks_hand_worked() -> None:
    # two pairs, two tasks, two experts. Pair 0: task 0 logits [0, ln 3] -> [1/4, 3/4], task 1
    # [0, 0] -> [1/2, 1/2]; experts [[4, 0], [0, 8]] -> [1, 6] and [2, 4]. Pair 1: task 0
    # [ln 3, 0] -> [3/4, 1/4], task 1 [0, -inf] -> [1, 0]; experts [[0, 4], [8, 0]] -> [2, 3]
    # and [0, 4]
    ln3, inf = float(torch.log(torch.tensor(3.0))), float("inf")
    logits = torch.tensor([[[0.0, ln3], [0.0, 0.0]], [[ln3, 0.0], [0.0, -inf]]])  # (2, T, E)
    experts = torch.tensor([[[4.0, 0.0], [0.0, 8.0]], [[0.0, 4.0], [8.0, 0.0]]])  # (2, E, H)
    want = torch.tensor([[[1.0, 6.0], [2.0, 4.0]], [[2.0, 3.0], [0.0, 4.0]]])
    torch.testing.assert_close(mix_tasks(logits, experts), want)
    # a strided view of a wider block (as stage two passes it) gives the same
    block = torch.zeros(2, 9)
    block[:, 4:8] = logits.reshape(2, 4)
    torch.testing.assert_close(mix_tasks(block[:, 4:8].unflatten(1, (2, 2)), experts), want)


def test_mlp_layers() -> None:
    net = mlp(4, [8, 2], dropout=0.5, activate_last=False)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear"]
    assert len(mlp(4, [], dropout=0.0)) == 0  # identity


def test_mix_hand_worked() -> None:
    # logits [0, ln 3] -> weights [1/4, 3/4]; experts [[4, 0], [0, 8]] -> [1, 6].
    logits = torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))]])  # (1, 2)
    experts = torch.tensor([[[4.0, 0.0], [0.0, 8.0]]])  # (1, 2, 2)
    torch.testing.assert_close(mix(logits, experts), torch.tensor([[1.0, 6.0]]))


def test_mmoe_gates_are_per_task() -> None:
    # Two tasks over the same experts differ only through their gates (and towers): with the
    # towers tied, different gates must give different outputs.
    arch = make_arch("mmoe", 2, dropout=0.0).eval()
    assert isinstance(arch, MMoE)
    arch.towers[1].load_state_dict(arch.towers[0].state_dict())
    out = arch(inputs())
    assert not torch.allclose(out[0], out[1])
    arch.gates[1].load_state_dict(arch.gates[0].state_dict())
    out = arch(inputs())
    torch.testing.assert_close(out[0], out[1])


def test_mmoe_one_product_equals_the_paper_formula() -> None:
    # Training runs every expert's layer and every gate as one product and every task's mix as
    # one bmm; the outputs and the gradients must be those of eq. 5-6 written expert by expert.
    arch = make_arch("mmoe", 2, hidden=[16], dropout=0.0).train()
    assert isinstance(arch, MMoE)
    x = inputs()
    out = arch(x)
    expected = []
    for gate, tower in zip(arch.gates, arch.towers, strict=True):
        weights = torch.softmax(gate(x), dim=-1)  # (B, E)
        mixed = sum(weights[:, [e]] * expert(x) for e, expert in enumerate(arch.experts.experts))
        expected.append(tower(mixed))
    for got, want in zip(out, expected, strict=True):
        torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(sum(o.square().sum() for o in out), list(arch.parameters()))
    wants = torch.autograd.grad(sum(o.square().sum() for o in expected), list(arch.parameters()))
    for got, want in zip(grads, wants, strict=True):
        torch.testing.assert_close(got, want)


def test_aitm_transfers_forward_only() -> None:
    # Task k reads task k-1, never the other way: task 1's output ignores task 2's tower.
    arch = make_arch("aitm", 2, dropout=0.0).eval()
    assert isinstance(arch, AITM)
    x = inputs()
    before = arch(x)
    with torch.no_grad():
        for p in arch.towers[1].parameters():
            p.add_(1.0)
    after = arch(x)
    torch.testing.assert_close(before[0], after[0])
    assert not torch.allclose(before[1], after[1])
