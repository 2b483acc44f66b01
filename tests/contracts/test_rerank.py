"""Stage two's fast path (``recommend/rerank.py``) against the plain forward, for every
architecture in the registry: the factored input layers, the fused mixes and the padded
products must give what ``arch(dense pair input)`` gives. The model-level check (every task's
prediction, ensembles included) is ``tests/integration/test_predict_candidates.py``."""

from __future__ import annotations

import typing

import pytest
import torch

from hydrarec.architectures import ARCHITECTURES, Architecture, SingleTask, build_architecture
from hydrarec.config import ArchitectureConfig
from hydrarec.recommend.rerank import (
    FAST_FORWARDS,
    PAD,
    ItemSideCache,
    Pairs,
    architecture_over,
    mix_tasks,
)

D, N_ITEMS, USERS, CANDIDATES = 4, 7, 4, 5


def make_arch(name: str, in_dim: int, **widths: typing.Any) -> Architecture:
    cfg = {"hidden": [16], "tower": [6], "experts": 3, "task_experts": 2, "levels": 2, **widths}
    torch.manual_seed(0)
    return build_architecture(ArchitectureConfig(name=name, **cfg), in_dim, 3).eval()


def random_pairs(cross: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    table, user = torch.randn(N_ITEMS, D, generator=gen), torch.randn(USERS, D, generator=gen)
    cand = torch.randint(0, N_ITEMS, (USERS, CANDIDATES), generator=gen)
    return table, user, cand


@pytest.mark.parametrize("dots", [True, False])  # u . i as one more column of the first product
@pytest.mark.parametrize("cross", [True, False])  # [user, item, user * item] or [user, item]
@pytest.mark.parametrize(
    "widths",
    [{}, {"hidden": [16, 8]}, {"hidden": [], "tower": []}],
    ids=["one-layer", "two-layer", "no-layers"],
)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fast_path_equals_the_plain_forward(
    name: str, widths: dict[str, list[int]], cross: bool, dots: bool
) -> None:
    arch = make_arch(name, (3 if cross else 2) * D, **widths)
    table, user, cand = random_pairs(cross)
    cache = ItemSideCache(table)
    for _ in range(2):  # the second call reuses the cache's stacked weights
        pairs = Pairs(user, cand, cache, cross=cross, dots=dots)
        got = architecture_over(arch, pairs)
        with torch.no_grad():
            want = arch(pairs.dense())
        assert len(got) == len(want) == 3
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape == (USERS * CANDIDATES, arch.out_dim)
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        want_dots = (user[:, None, :] * table[cand]).sum(-1).flatten()
        torch.testing.assert_close(pairs.dots(), want_dots, rtol=1e-5, atol=1e-5)
    item = table[cand]  # (4, 5, d)
    u = user[:, None, :].expand_as(item)
    dense = torch.cat([u, item, u * item][: 3 if cross else 2], -1).reshape(20, -1)
    assert torch.equal(pairs.dense(), dense)


def test_every_architecture_of_the_registry_has_a_fast_forward() -> None:
    # without one, an architecture is still scored right (below), over the materialised pairs
    assert set(FAST_FORWARDS) == set(ARCHITECTURES.values())


def test_an_architecture_without_a_fast_forward_reads_the_dense_pairs() -> None:
    class Unlisted(SingleTask):
        pass

    cfg = ArchitectureConfig(name="single", hidden=[8], tower=[3])
    arch = Unlisted(3 * D, 2, cfg).eval()
    table, user, cand = random_pairs(True)
    pairs = Pairs(user, cand, ItemSideCache(table))
    with torch.no_grad():
        want = arch(pairs.dense())
    for g, w in zip(architecture_over(arch, pairs), want, strict=True):
        assert torch.equal(g, w)


def test_factored_linear_hand_worked() -> None:
    # W = [w_u | w_i | w_x] = [1 | 2 | 3], bias 0.5; user 2, items [1, -1]
    layer = torch.nn.Linear(3, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        layer.bias.fill_(0.5)
    user, cand, table = torch.tensor([[2.0]]), torch.tensor([[0, 1]]), torch.tensor([[1.0], [-1.0]])
    pairs = Pairs(user, cand, ItemSideCache(table))
    # 1*2 + 2*1 + 3*2 + 0.5 = 10.5; 1*2 - 2 - 3*2 + 0.5 = -5.5
    assert pairs.linear(layer).flatten().tolist() == [10.5, -5.5]
    assert pairs.dots().tolist() == [2.0, -2.0]  # u . i, computed on its own
    # asked for up front, u . i rides on the first product as one more column
    with_dots = Pairs(user, cand, ItemSideCache(table), dots=True)
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
    with torch.no_grad():
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
