"""Pieces every architecture (and the towers) share: MLP stacks, expert mixtures, the base class.

Kept here once, so each architecture file reads as its diagram and nothing else (the argument
blocks copied into every DeepCTR-Torch multi-task model are what this avoids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from hydrarec.architectures.pairs import Pairs, first, linears
from hydrarec.config import ArchitectureConfig
from hydrarec.nn import dropout, mlp

__all__ = [
    "Architecture",
    "Experts",
    "Pairs",
    "first",
    "linears",
    "mix",
    "mix_tasks",
    "mlp",
    "task_towers",
    "width",
]


def width(in_dim: int, widths: Sequence[int]) -> int:
    """Output width of ``mlp(in_dim, widths, ...)``."""
    return widths[-1] if widths else in_dim


def mix(logits: Tensor, experts: Tensor) -> Tensor:
    """Softmax-gated sum of experts: logits (B, E), experts (B, E, H) -> (B, H).

    One batched (1, E) @ (E, H) product per row: on CPU its forward + backward took 0.84 ms for
    B = 512, E = 4, H = 128, against 6.8 ms for the same ``einsum("be,beh->bh")``.
    """
    weights = torch.softmax(logits, dim=-1)  # (B, E)
    return torch.bmm(weights.unsqueeze(1), experts).squeeze(1)  # (B, H)


def mix_tasks(logits: Tensor, experts: Tensor) -> Tensor:
    """Every task's ``mix`` at once: logits (B, T, E), experts (B, E, H) -> (B, T, H).

    Inference only (stage two): the softmax is written out, since ``torch.softmax`` over a last
    dimension of a few experts took 0.63 ms for B = 3200, T = 2, E = 4 on CPU, against 0.26 ms;
    and it runs over a (T, E, B) copy, where each step is a pass over rows of B pairs rather than
    over B rows of E: the mix at B = 1600 (8 users' candidates), 0.48-0.71 -> 0.37-0.41 ms, the
    same numbers.
    """
    b, t, e = logits.shape
    weights = logits.reshape(b, t * e).T.contiguous().view(t, e, b)
    weights = (weights - weights.amax(dim=1, keepdim=True)).exp_()
    weights.div_(weights.sum(dim=1, keepdim=True))
    return torch.bmm(weights.permute(2, 0, 1).contiguous(), experts)


class Experts(nn.Module):
    """``n`` expert MLPs of widths ``cfg.hidden`` on the same input: (B, in_dim) -> (B, n, H)."""

    def __init__(self, in_dim: int, n: int, cfg: ArchitectureConfig) -> None:
        super().__init__()
        self.experts = nn.ModuleList(mlp(in_dim, cfg.hidden, cfg.dropout) for _ in range(n))
        # one hidden layer (Linear, ReLU, Dropout): every expert's layer runs as one product and
        # the ReLU (and dropout) once over its output, in training and in stage two alike
        self.one_layer = len(cfg.hidden) == 1
        self.dropout = cfg.dropout

    def firsts(self) -> list[nn.Linear]:
        """Each expert's first Linear."""
        return [cast(nn.Linear, cast(nn.Sequential, expert)[0]) for expert in self.experts]

    def forward(self, x: Tensor | Pairs) -> Tensor:
        if not self.one_layer:
            return torch.stack([first(expert, x) for expert in self.experts], dim=1)  # (B, n, H)
        block = linears(self.firsts(), x).relu_()  # (B, n * H), ours
        block = dropout(block, self.dropout, self.training)  # a copy: ReLU's backward reads it
        return block.unflatten(1, (len(self.experts), -1))  # (B, n, H); B may be 0


def task_towers(in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> nn.ModuleList:
    """One MLP of widths ``cfg.tower`` per task, on top of whatever the tasks share."""
    return nn.ModuleList(mlp(in_dim, cfg.tower, cfg.dropout) for _ in range(n_tasks))


class Architecture(nn.Module):
    """Base of every multi-task architecture: ``x (B, in_dim)`` -> one ``(B, out_dim)`` per task.

    Task heads (the final Linear to a logit) belong to the tasks, not to the architecture.
    ``x`` may also be ``Pairs`` (stage-two re-ranking): every layer that reads ``x`` directly
    goes through ``first``, which computes it factored.
    """

    out_dim: int

    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.n_tasks = n_tasks

    def forward(self, x: Tensor | Pairs) -> list[Tensor]:
        raise NotImplementedError
