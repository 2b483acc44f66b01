"""Pieces every architecture (and the towers) share: MLP stacks, expert mixtures, the base class.

Kept here once, so each architecture file reads as its diagram and nothing else (the argument
blocks copied into every DeepCTR-Torch multi-task model are what this avoids).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hydrarec.config import ArchitectureConfig
from hydrarec.encoders.blocks import mlp

__all__ = ["Architecture", "Experts", "mix", "mlp", "output_width", "task_towers"]


def output_width(in_dim: int, widths: Sequence[int]) -> int:
    """Output width of ``mlp(in_dim, widths, ...)``."""
    return widths[-1] if widths else in_dim


def mix(logits: Tensor, experts: Tensor) -> Tensor:
    """Softmax-gated sum of experts: logits (B, E), experts (B, E, H) -> (B, H).

    One batched (1, E) @ (E, H) product per row: on CPU much faster, forward and backward, than
    the same ``einsum("be,beh->bh")``.
    """
    weights = torch.softmax(logits, dim=-1)  # (B, E)
    return torch.bmm(weights.unsqueeze(1), experts).squeeze(1)  # (B, H)


class Experts(nn.Module):
    """``n`` expert MLPs of widths ``cfg.hidden`` on the same input: (B, in_dim) -> (B, n, H)."""

    def __init__(self, in_dim: int, n: int, cfg: ArchitectureConfig) -> None:
        super().__init__()
        self.experts = nn.ModuleList(mlp(in_dim, cfg.hidden, cfg.dropout) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, n, H)


def task_towers(in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> nn.ModuleList:
    """One MLP of widths ``cfg.tower`` per task, on top of whatever the tasks share."""
    return nn.ModuleList(mlp(in_dim, cfg.tower, cfg.dropout) for _ in range(n_tasks))


class Architecture(nn.Module):
    """Base of every multi-task architecture: ``x (B, in_dim)`` -> one ``(B, out_dim)`` per task.

    Task heads (the final Linear to a logit) belong to the tasks, not to the architecture.
    Stage-two re-ranking wraps a trained one from outside (``recommend/rerank.py``).
    """

    out_dim: int

    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.n_tasks = n_tasks

    def forward(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError
