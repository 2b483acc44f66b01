"""Multi-gate Mixture-of-Experts.

J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018 (https://doi.org/10.1145/3219819.3220007).

Every task reads the same experts through its own softmax gate (eq. 5-6):

    f_k(x) = sum_i softmax(W_k x)_i * expert_i(x),    out_k = tower_k(f_k(x))

so tasks that disagree can lean on different experts instead of fighting over one shared bottom.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydrarec.architectures.layers import Architecture, Experts, output_width, task_towers
from hydrarec.config import ArchitectureConfig


class MMoE(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        self.experts = Experts(in_dim, cfg.experts, cfg)
        self.gates = nn.ModuleList(nn.Linear(in_dim, cfg.experts) for _ in range(n_tasks))
        expert_dim = output_width(in_dim, cfg.hidden)
        self.towers = task_towers(expert_dim, n_tasks, cfg)
        self.out_dim = output_width(expert_dim, cfg.tower)

    def forward(self, x: Tensor) -> list[Tensor]:
        if not self.towers:
            return []
        experts = self.experts(x)  # (B, E, H): expert_i(x)
        logits = torch.stack([gate(x) for gate in self.gates], dim=1)  # (B, T, E): W_k x
        # every task's eq. 5 at once: one (T, E) @ (E, H) product per row
        mixed = torch.bmm(torch.softmax(logits, dim=-1), experts)  # (B, T, H): f_k(x)
        return [tower(mixed[:, t]) for t, tower in enumerate(self.towers)]  # T x (B, out_dim)
