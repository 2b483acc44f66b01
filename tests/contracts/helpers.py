"""Hand-built features and histories for the contract suites (no data loading, no vocabularies)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydrarec.features.batch import EntityFeatures, EntitySpec

B = 6  # rows per test batch
N = 5  # history length


def make_spec(text_dim: int = 0, numeric: bool = True, multi_hot: bool = True) -> EntitySpec:
    """A spec with every kind of feature: id, two categorical columns, numeric, multi-hot, text."""
    return EntitySpec(
        n_ids=20,
        categorical={"genre": 7, "items": 4},  # "items" would clash with a ModuleDict method
        n_numeric=3 if numeric else 0,
        numeric_names=("age", "price", "year") if numeric else (),
        multi_hot={"tags": 9} if multi_hot else {},
        text_dim=text_dim,
    )


def make_features(spec: EntitySpec, n: int = B, seed: int = 0) -> EntityFeatures:
    """``n`` rows of random features; ids and values start at 2 (never padding, never OOV)."""
    g = torch.Generator().manual_seed(seed)
    tags = {}
    for name, size in spec.multi_hot.items():
        t = torch.randint(2, size, (n, 4), generator=g)  # (n, 4)
        t[0, 1:] = 0  # row 0: one token, then padding
        if n > 1:
            t[1] = 0  # row 1: no tokens at all
        tags[name] = t
    return EntityFeatures(
        ids=torch.randint(2, spec.n_ids, (n,), generator=g),
        categorical={
            k: torch.randint(2, size, (n,), generator=g) for k, size in spec.categorical.items()
        },
        numeric=torch.randn(n, spec.n_numeric, generator=g) if spec.n_numeric else None,
        multi_hot=tags,
        text=torch.randn(n, spec.text_dim, generator=g) if spec.text_dim else None,
    )


def make_history(n: int = B, length: int = N, dim: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Right-aligned histories (n, length, dim) with lengths length, length-1, ..., 0, length, ...

    Row 0 is full (every position is used, so every positional embedding gets a gradient) and
    one row in every ``length + 1`` is empty. Padded positions hold random values on purpose:
    an encoder must ignore them.
    """
    g = torch.Generator().manual_seed(seed)
    seq = torch.randn(n, length, dim, generator=g)  # (n, length, dim)
    lengths = torch.tensor([length - (i % (length + 1)) for i in range(n)])  # (n,)
    mask = torch.arange(length).unsqueeze(0) >= (length - lengths).unsqueeze(1)  # (n, length)
    return seq, mask


def backward_random_projection(out: Tensor, seed: int = 0) -> None:
    """Backpropagate a fixed random projection of ``out``, ``sum(out * w)`` with w ~ N(0, 1).
    Not ``out.sum()``: an output that ends in a LayerNorm sums to a constant per row, so its sum
    sends (near) zero gradient upstream, and a gradient check then passes on rounding noise or
    fails on an exact zero (issue 21)."""
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * w.to(out.dtype)).sum().backward()


def assert_grads_everywhere(module: nn.Module) -> None:
    """Every parameter has a finite gradient that is not all zero."""
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: gradient is all zero"
