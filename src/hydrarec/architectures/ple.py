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

from hydrarec.architectures.layers import Architecture, Experts, mix, output_width, task_towers
from hydrarec.config import ArchitectureConfig


class ExtractionLevel(nn.Module):
    """One CGC block: (per-task inputs, shared input) -> (per-task outputs, shared output); the
    last level's shared output is None."""

    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig, last: bool) -> None:
        super().__init__()
        n_shared, n_own = cfg.experts, cfg.task_experts
        self.shared = Experts(in_dim, n_shared, cfg)
        self.own = nn.ModuleList(Experts(in_dim, n_own, cfg) for _ in range(n_tasks))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_own + n_shared) for _ in range(n_tasks))
        self.shared_gate = None if last else nn.Linear(in_dim, n_tasks * n_own + n_shared)

    def forward(
        self, task_x: Sequence[Tensor], shared_x: Tensor
    ) -> tuple[list[Tensor], Tensor | None]:
        shared = self.shared(shared_x)  # (B, S, H)
        own = [experts(x) for experts, x in zip(self.own, task_x, strict=True)]  # T x (B, O, H)
        task_logits = [gate(x) for gate, x in zip(self.task_gates, task_x, strict=True)]
        shared_logits = None if self.shared_gate is None else self.shared_gate(shared_x)
        return self.combine(own, shared, task_logits, shared_logits)

    def combine(
        self,
        own: list[Tensor],
        shared: Tensor,
        task_logits: list[Tensor],
        shared_logits: Tensor | None,
    ) -> tuple[list[Tensor], Tensor | None]:
        """The gates' mixes of the experts' outputs: task k's (eq. 2-4), the shared one (eq. 5).
        own: T x (B, O, H), shared: (B, S, H), logits: T x (B, O + S) and (B, T * O + S)."""
        task_out = [
            mix(logits, torch.cat([mine, shared], dim=1))  # (B, H)
            for logits, mine in zip(task_logits, own, strict=True)
        ]
        if shared_logits is None:  # last level: nothing reads a shared output
            return task_out, None
        everyone = torch.cat([*own, shared], dim=1)  # (B, T * O + S, H)
        return task_out, mix(shared_logits, everyone)  # (B, H)


class PLE(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        expert_dim = output_width(in_dim, cfg.hidden)
        self.levels = nn.ModuleList(
            ExtractionLevel(in_dim if i == 0 else expert_dim, n_tasks, cfg, i == cfg.levels - 1)
            for i in range(cfg.levels)
        )
        self.towers = task_towers(expert_dim, n_tasks, cfg)
        self.out_dim = output_width(expert_dim, cfg.tower)

    def forward(self, x: Tensor) -> list[Tensor]:
        if not self.towers:
            return []
        task_x, shared_x = [x] * len(self.towers), x  # level 1 reads the input everywhere
        for level in self.levels:
            task_x, shared_x = level(task_x, shared_x)  # n_tasks x (B, H), (B, H)
        return [tower(h) for tower, h in zip(self.towers, task_x, strict=True)]  # (B, out_dim)
