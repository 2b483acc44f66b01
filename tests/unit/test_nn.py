"""hydrarec.nn: ``dropout`` (the CPU mask from numpy's PCG64, seeded by torch's generator),
``take`` (row gathers through ``index_select``) and ``infer`` (an ``mlp`` without module calls)."""

from __future__ import annotations

import torch
from torch import nn

from hydrarec.nn import MASK_LEVELS, Dropout, dropout, infer, mlp, take


def test_identity_outside_training_and_at_zero() -> None:
    x = torch.randn(4, 5)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    layer = Dropout(0.3).eval()
    assert layer(x) is x


def test_kept_values_are_scaled_by_the_rounded_keep_share() -> None:
    # p = 0.25 is a whole number of 1/65536 steps (16384): kept entries are x / 0.75, others 0.
    torch.manual_seed(0)
    x = torch.full((1000,), 3.0)
    out = dropout(x, 0.25)
    kept = out != 0
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 4.0))
    # p = 0.1 rounds to 6554 / 65536: the scale is 65536 / 58982, not 1 / 0.9
    out = dropout(x, 0.1)
    scale = MASK_LEVELS / (MASK_LEVELS - 6554)
    torch.testing.assert_close(out[out != 0], torch.full((int((out != 0).sum()),), 3.0 * scale))


def test_p_too_close_to_0_or_1_for_16_bit_draws_falls_back_to_torch() -> None:
    # round(p * 65536) is 0 or 65536: no 16-bit cut can drop that share; torch's mask does
    torch.manual_seed(0)
    x = torch.ones(100_000)
    out = dropout(x, 1e-6)  # torch's mask: kept values scaled by exactly 1 / (1 - p)
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - 1e-6)))
    out = dropout(x, 1 - 1e-6)  # was a ZeroDivisionError in the scale
    assert torch.isfinite(out).all() and int((out != 0).sum()) < 10


def test_drop_share_and_mean() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    out = dropout(x, 0.3)
    dropped = float((out == 0).float().mean())
    assert abs(dropped - 0.3) < 0.005  # binomial sd at n = 200,000: 0.001
    assert abs(float(out.mean()) - 1.0) < 0.01  # the expectation is kept


def test_follows_torch_seed_and_differs_between_calls() -> None:
    x = torch.randn(64, 32)
    torch.manual_seed(7)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(7)
    a2 = dropout(x, 0.5)
    torch.testing.assert_close(a, a2)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(50, 8, requires_grad=True)
    out = dropout(x, 0.5)
    out.sum().backward()
    assert x.grad is not None
    expected = (out.detach() != 0).float() * 2.0
    torch.testing.assert_close(x.grad, expected)


def test_mlp_uses_it() -> None:
    net = mlp(4, [8], dropout=0.2)
    assert isinstance(net[2], Dropout) and isinstance(net[2], nn.Dropout)
    assert net[2].p == 0.2


def test_take_is_indexing_forward_and_backward() -> None:
    table = torch.arange(12.0).view(4, 3).requires_grad_()
    index = torch.tensor([[3, 0], [3, 3]])  # (2, 2): row 3 three times, row 0 once
    out = take(table, index)
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out, table.detach()[index])
    out.sum().backward()
    assert table.grad is not None
    expected = torch.tensor([1.0, 0.0, 0.0, 3.0])[:, None].expand(4, 3)  # times each row is read
    torch.testing.assert_close(table.grad, expected)


def test_infer_is_the_mlp_in_eval_and_leaves_its_input() -> None:
    torch.manual_seed(0)
    net = mlp(4, [8, 3], dropout=0.5).eval()
    x = torch.randn(5, 4)
    before = x.clone()
    torch.testing.assert_close(infer(net, x), net(x))
    assert torch.equal(x, before)  # the ReLUs ran in place on the products, not on x
    bare = mlp(4, [8, 3], dropout=0.5, activate_last=False).eval()
    torch.testing.assert_close(infer(bare, x), bare(x))
    assert torch.equal(infer(mlp(4, [], dropout=0.0), x), x)  # the identity


def test_infer_hand_worked_and_in_training_calls_the_net() -> None:
    net = mlp(2, [2], dropout=0.0)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.5, 0.5]))
    x = torch.tensor([[1.0, 2.0]])
    net.eval()
    assert infer(net, x).tolist() == [[1.5, 0.0]]  # relu([1.5, -1.5])
    net.train()
    torch.manual_seed(3)
    a = infer(net, x)
    torch.manual_seed(3)
    assert torch.equal(a, net(x))  # training: the module itself (dropout and all)
