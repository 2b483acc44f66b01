"""Progressive Layered Extraction.

H. Tang, J. Liu, M. Zhao, X. Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task
Learning (MTL) Model for Personalized Recommendations", RecSys 2020
(https://doi.org/10.1145/3383313.3412236).

Each level is a Customized Gate Control (CGC) block: shared experts plus experts owned by each
task. Task k's gate mixes its own experts and the shared ones (eq. 2-4); a shared gate mixes all
experts into the shared input of the next level (eq. 5). The last level has no shared gate:
nothing reads its output. Levels stack ``cfg.levels`` times; the towers read the last level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hydrarec.architectures.layers import (
    Architecture,
    Experts,
    Pairs,
    first,
    mix,
    task_towers,
    width,
)
from hydrarec.config import ArchitectureConfig


class ExtractionLevel(nn.Module):
    """One CGC block: (per-task inputs, shared input) -> (per-task outputs, shared output)."""

    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig, last: bool) -> None:
        super().__init__()
        n_shared, n_own = cfg.experts, cfg.task_experts
        self.shared = Experts(in_dim, n_shared, cfg)
        self.own = nn.ModuleList(Experts(in_dim, n_own, cfg) for _ in range(n_tasks))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_own + n_shared) for _ in range(n_tasks))
        self.shared_gate = None if last else nn.Linear(in_dim, n_tasks * n_own + n_shared)

    def forward(
        self, task_x: Sequence[Tensor | Pairs], shared_x: Tensor | Pairs
    ) -> tuple[list[Tensor], Tensor | Pairs]:
        shared = self.shared(shared_x)  # (B, S, H)
        own = [experts(x) for experts, x in zip(self.own, task_x, strict=True)]  # T x (B, O, H)
        task_out = []
        for gate, x, mine in zip(self.task_gates, task_x, own, strict=True):
            experts = torch.cat([mine, shared], dim=1)  # (B, O + S, H)
            task_out.append(mix(first(gate, x), experts))  # (B, H)
        if self.shared_gate is None:  # last level: nothing reads a shared output
            return task_out, shared_x
        everyone = torch.cat([*own, shared], dim=1)  # (B, T * O + S, H)
        return task_out, mix(first(self.shared_gate, shared_x), everyone)  # (B, H)


class PLE(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        expert_dim = width(in_dim, cfg.hidden)
        self.levels = nn.ModuleList(
            ExtractionLevel(in_dim if i == 0 else expert_dim, n_tasks, cfg, i == cfg.levels - 1)
            for i in range(cfg.levels)
        )
        self.towers = task_towers(expert_dim, n_tasks, cfg)
        self.out_dim = width(expert_dim, cfg.tower)

    def forward(self, x: Tensor | Pairs) -> list[Tensor]:
        if not self.towers:
            return []
        task_x: Sequence[Tensor | Pairs] = [x] * len(self.towers)
        shared_x: Tensor | Pairs = x  # level 1 reads the input everywhere
        for level in self.levels:
            task_x, shared_x = level(task_x, shared_x)  # n_tasks x (B, H), (B, H)
        return [tower(h) for tower, h in zip(self.towers, task_x, strict=True)]  # (B, out_dim)
