"""hydrarec.encoders.blocks: ``mlp`` (Linear, ReLU, torch's Dropout per width) and
``gather_rows`` (row gathers through ``index_select``)."""

from __future__ import annotations

import torch
from torch import nn

from hydrarec.encoders.blocks import gather_rows, mlp


def test_mlp_layers_and_dropout() -> None:
    net = mlp(4, [8, 3], dropout=0.2, activate_last=False)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert net[2].p == 0.2 and (net[0].in_features, net[3].out_features) == (4, 3)
    x = torch.randn(5, 4)
    net.eval()
    assert torch.equal(net(x), net[3](net[0](x).relu()))  # eval: dropout is the identity
    assert torch.equal(mlp(4, [], dropout=0.5)(x), x)  # no widths: the identity


def test_mlp_dropout_follows_the_torch_seed_in_training() -> None:
    net = mlp(4, [64], dropout=0.5).train()
    x = torch.randn(32, 4)
    torch.manual_seed(7)
    a, b = net(x), net(x)
    torch.manual_seed(7)
    assert torch.equal(a, net(x))
    assert not torch.equal(a, b)
    relu = net[0](x).relu()
    kept = a != 0
    torch.testing.assert_close(a[kept], 2 * relu[kept])  # kept values scaled by 1 / (1 - p)


def test_gather_rows_is_indexing_forward_and_backward() -> None:
    table = torch.arange(12.0).view(4, 3).requires_grad_()
    index = torch.tensor([[3, 0], [3, 3]])  # (2, 2): row 3 three times, row 0 once
    out = gather_rows(table, index)
    assert out.shape == (2, 2, 3)
    torch.testing.assert_close(out, table.detach()[index])
    out.sum().backward()
    assert table.grad is not None
    expected = torch.tensor([1.0, 0.0, 0.0, 3.0])[:, None].expand(4, 3)  # times each row is read
    torch.testing.assert_close(table.grad, expected)
