"""Neural-network building blocks shared by the towers (encoders/) and the architectures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

MASK_LEVELS = 1 << 16  # the CPU mask draws 16-bit numbers: p is rounded to a multiple of 1/65536


def mlp(
    in_dim: int, widths: Sequence[int], dropout: float, activate_last: bool = True
) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per width; the last Linear is bare when ``activate_last`` is off.

    No BatchNorm: it breaks batches of one in training and makes outputs depend on the batch.
    An empty ``widths`` is the identity.
    """
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers.append(nn.Linear(in_dim, width))
        if activate_last or i < len(widths) - 1:
            layers += [nn.ReLU(), Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


def infer(net: nn.Module, x: Tensor) -> Tensor:
    """``net(x)``; for an ``mlp`` in eval mode, without its module calls: each Linear one
    product, each ReLU in place on the output of the product before it, Dropout (the identity in
    eval) skipped. Anything else, and any module in training mode, is called as usual.

    Stage two runs every task tower once per batch of requests, and each module call costs a few
    microseconds of Python (4 per one-layer tower); the ReLU in place spares a (B, H) copy.
    """
    if net.training or not isinstance(net, nn.Sequential):
        return net(x)  # type: ignore[no-any-return]
    fresh = False  # whether x is a tensor this function made (a ReLU may then be in place)
    for layer in net:
        if isinstance(layer, nn.Linear):
            x, fresh = F.linear(x, layer.weight, layer.bias), True
        elif isinstance(layer, nn.ReLU):
            x = x.relu_() if fresh else x.relu()
            fresh = True
        elif not isinstance(layer, nn.Dropout):
            x, fresh = layer(x), False
    return x


def param_groups_of(*modules: nn.Module) -> list[dict[str, Any]]:
    """The optimizer groups the modules ask for: each module's ``param_groups()`` (params and
    AdamW settings such as ``lr``), where it defines one."""
    groups: list[dict[str, Any]] = []
    for module in modules:
        own = getattr(module, "param_groups", None)
        groups += own() if callable(own) else []
    return groups


def take(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a long ``index`` of any shape over the first dimension: rows of ``x`` as
    (*index.shape, *x.shape[1:]). Through ``index_select``, whose backward is one ``index_add_``:
    at 2 CPU threads ``x[index]`` forward + backward took 1.16 ms against 0.31 ms for a
    (128, 20) index into a (1682, 64) table (its backward, an accumulating ``index_put_``, runs
    slower with more threads on this machine)."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout``, with a cheaper mask on CPU.

    torch draws a CPU dropout mask from its Mersenne Twister one element at a time: 1.9 ms of an
    ~80 ms ML-100K window step for a (637, 512) block, 11 % of the step over its five dropout
    layers (this project's 2-core Xeon). Here the mask comes from numpy's PCG64 (16-bit draws,
    ~4x cheaper) seeded by one draw from torch's generator, so ``torch.manual_seed``, the
    checkpointed RNG state and each DDP rank's own stream still decide it. ``p`` is rounded to a
    multiple of 1/65536 and the kept values are scaled by the inverse of the rounded keep share,
    so the output's expectation is ``x``. Other devices (CUDA's mask is cheap) use ``F.dropout``.
    """
    if not training or p == 0.0:
        return x
    cut = round(p * MASK_LEVELS)  # draws below it are dropped
    if x.device.type != "cpu" or not 0 < cut < MASK_LEVELS:  # p within 2**-17 of 0 or 1 too
        return F.dropout(x, p, training=True)
    seed = int(torch.randint(0, 2**62, (1,)))
    draws = np.random.default_rng(seed).integers(0, MASK_LEVELS, x.numel(), dtype=np.uint16)
    keep = torch.from_numpy(draws >= cut).view(x.shape)
    scale = MASK_LEVELS / (MASK_LEVELS - cut)
    return x * keep.to(x.dtype).mul_(scale)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through ``dropout`` above (same parameters, repr and state dict); the
    output is always a new tensor (``inplace`` is not honoured)."""

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training)
