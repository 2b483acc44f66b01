"""Multi-gate Mixture-of-Experts.

J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018 (https://doi.org/10.1145/3219819.3220007).

Every task reads the same experts through its own softmax gate (eq. 5-6):

    f_k(x) = sum_i softmax(W_k x)_i * expert_i(x),    out_k = tower_k(f_k(x))

so tasks that disagree can lean on different experts instead of fighting over one shared bottom.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from hydrarec.architectures.layers import (
    Architecture,
    Experts,
    Pairs,
    linears,
    mix_tasks,
    task_towers,
    width,
)
from hydrarec.config import ArchitectureConfig
from hydrarec.nn import infer


class MMoE(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        self.experts = Experts(in_dim, cfg.experts, cfg)
        self.gates = nn.ModuleList(nn.Linear(in_dim, cfg.experts) for _ in range(n_tasks))
        expert_dim = width(in_dim, cfg.hidden)
        self.towers = task_towers(expert_dim, n_tasks, cfg)
        self.out_dim = width(expert_dim, cfg.tower)

    def forward(self, x: Tensor | Pairs) -> list[Tensor]:
        if not self.towers:
            return []
        gates = cast(list[nn.Linear], list(self.gates))
        if isinstance(x, Pairs) and self.experts.one_layer:
            mixed = self._mix_pairs(x, gates)
        else:
            experts = self.experts(x)  # (B, E, H)
            # every gate in one product, every task's mix in one bmm (B, T, E) @ (B, E, H)
            logits = linears(gates, x).unflatten(1, (len(gates), -1))  # (B, T, E)
            if isinstance(x, Pairs):  # stage two: inference only, the softmax in place
                mixed = mix_tasks(logits, experts)  # (B, T, H)
            else:
                mixed = torch.bmm(torch.softmax(logits, dim=-1), experts)  # (B, T, H)
        return [infer(tower, mixed[:, t]) for t, tower in enumerate(self.towers)]  # (B, out_dim)

    def _mix_pairs(self, x: Pairs, gates: list[nn.Linear]) -> Tensor:
        """Stage two (inference): the experts' layers and the gates read the pairs in ONE
        factored product (B, E H + T E), the ReLU and the softmax in place; (B, T, H)."""
        firsts = self.experts.firsts()
        block = x.linears(firsts + gates)
        eh = sum(layer.out_features for layer in firsts)
        experts = block[:, :eh].relu_().unflatten(1, (len(firsts), -1))  # (B, E, H), a view
        return mix_tasks(block[:, eh:].unflatten(1, (len(gates), -1)), experts)
