"""Shared-bottom multi-task learning: one MLP for every task, then a tower per task.

R. Caruana, "Multitask Learning", Machine Learning 28, 1997 (hard parameter sharing).

    x -> bottom -> tower_k -> out_k
"""

from __future__ import annotations

from torch import Tensor

from hydrarec.architectures.layers import Architecture, mlp, output_width, task_towers
from hydrarec.config import ArchitectureConfig


class SharedBottom(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        self.bottom = mlp(in_dim, cfg.hidden, cfg.dropout)
        shared_dim = output_width(in_dim, cfg.hidden)
        self.towers = task_towers(shared_dim, n_tasks, cfg)
        self.out_dim = output_width(shared_dim, cfg.tower)

    def forward(self, x: Tensor) -> list[Tensor]:
        shared = self.bottom(x)  # (B, H)
        return [tower(shared) for tower in self.towers]  # n_tasks x (B, out_dim)
