"""Neural-network building blocks shared by the towers (encoders/) and the architectures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn


def mlp(
    in_dim: int, widths: Sequence[int], dropout: float, activate_last: bool = True
) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per width; the last Linear is bare when ``activate_last`` is off.

    No BatchNorm: it breaks batches of one in training and makes outputs depend on the batch.
    An empty ``widths`` is the identity.
    """
    layers: list[nn.Module] = []
    for i, out_dim in enumerate(widths):
        layers.append(nn.Linear(in_dim, out_dim))
        if activate_last or i < len(widths) - 1:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
        in_dim = out_dim
    return nn.Sequential(*layers)


def param_groups_of(*modules: nn.Module) -> list[dict[str, Any]]:
    """The optimizer groups the modules ask for: each module's ``param_groups()`` (params and
    AdamW settings such as ``lr``), where it defines one."""
    groups: list[dict[str, Any]] = []
    for module in modules:
        own = getattr(module, "param_groups", None)
        groups += own() if callable(own) else []
    return groups


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` for a long ``index`` of any shape: rows of ``table`` as
    (*index.shape, *table.shape[1:]).

    Through ``index_select``: its backward is one ``index_add_``, several times faster on CPU
    than the accumulating ``index_put_`` behind ``table[index]`` (``benchmarks/RESULTS.md``)."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])
