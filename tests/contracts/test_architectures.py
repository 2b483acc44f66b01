"""The contract every multi-task architecture passes (after implicit's recommender_base_test.py).

Parametrised over the registry: adding an architecture to ``ARCHITECTURES`` runs all of this on it.
"""

from __future__ import annotations

import typing

import pytest
import torch
from tests.contracts.helpers import B, assert_grads_everywhere

from hydrarec.architectures import AITM, ARCHITECTURES, Architecture, MMoE, build_architecture
from hydrarec.architectures.layers import mix, mlp
from hydrarec.config import ArchitectureConfig
from hydrarec.errors import ConfigError

IN_DIM = 12
NAMES = list(ARCHITECTURES)
TASKS = [1, 2, 3]


HIDDEN = [16, 8]  # the experts' / bottom's widths of make_arch; the fixture below sets it


@pytest.fixture(autouse=True, params=[[16, 8], [16]], ids=["two-layer", "one-layer"])
def hidden(request: pytest.FixtureRequest) -> typing.Iterator[list[int]]:
    """Every test runs with two-layer and with one-layer experts (one hidden layer: the default
    config, whose stage two fuses all experts and gates into one product)."""
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


def test_mmoe_equals_the_paper_formula() -> None:
    # The forward mixes every task at once (one bmm over stacked experts and gate logits); the
    # outputs and the gradients must be those of eq. 5-6 written expert by expert.
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
