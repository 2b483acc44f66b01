"""Adaptive Information Transfer Multi-task (AITM).

D. Xi, Z. Chen, P. Yan, Y. Zhang, Y. Zhu, F. Zhuang, Y. Chen, "Modeling the Sequential Dependence
among Audience Multi-step Conversions with Multi-task Learning in Targeted Display Advertising",
KDD 2021 (https://arxiv.org/abs/2105.08489).

Tasks form a funnel in config order (e.g. click -> like -> buy). Each task has its own tower
q_k; from task 2 on, an attention unit (AIT, eq. 3-5) blends q_k with p_{k-1}, the information
transferred from the previous task's output z_{k-1}:

    p_{k-1} = ReLU(W z_{k-1})
    z_k = sum_{u in {p_{k-1}, q_k}} w_u h1(u),   w_u = softmax_u(<h2(u), h3(u)> / sqrt(d))

The paper's behavioural-expectation calibrator is a loss term (later task <= earlier task), so
it belongs to the joint loss, not to this module.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hydrarec.architectures.layers import Architecture, mlp, output_width
from hydrarec.config import ArchitectureConfig


class TransferAttention(nn.Module):
    """AIT unit: attention over the two candidates {p_{k-1}, q_k} -> z_k."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Linear(dim, dim)  # h1
        self.key = nn.Linear(dim, dim)  # h2
        self.query = nn.Linear(dim, dim)  # h3
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        u = torch.stack([p, q], dim=1)  # (B, 2, d)
        scores = (self.key(u) * self.query(u)).sum(dim=-1) * self.scale  # (B, 2)
        w = torch.softmax(scores, dim=1)  # (B, 2)
        return (w.unsqueeze(-1) * self.value(u)).sum(dim=1)  # (B, d)


class AITM(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        widths = [*cfg.hidden, *cfg.tower]
        self.towers = nn.ModuleList(mlp(in_dim, widths, cfg.dropout) for _ in range(n_tasks))
        d = self.out_dim = output_width(in_dim, widths)
        n_links = max(n_tasks - 1, 0)  # task k > 1 reads task k-1
        self.transfers = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d), nn.ReLU()) for _ in range(n_links)
        )
        self.attention = nn.ModuleList(TransferAttention(d) for _ in range(n_links))

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.funnel([tower(x) for tower in self.towers])  # q_k: n_tasks x (B, d)

    def funnel(self, q: list[Tensor]) -> list[Tensor]:
        """The towers' outputs q_k (B, d) -> z_k: z_1 = q_1, z_k = AIT(p_{k-1}, q_k)."""
        out = q[:1]
        for k in range(1, len(q)):
            p = self.transfers[k - 1](out[-1])  # (B, d): p_{k-1}
            out.append(self.attention[k - 1](p, q[k]))  # (B, d): z_k
        return out
