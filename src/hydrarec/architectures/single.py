"""Independent models: one MLP per task, nothing shared; the baseline sharing must beat.

Each task gets ``hidden`` + ``tower`` widths, so it is as deep as the shared-bottom model it is
compared with (Ma et al., KDD 2018, use the same baseline in their synthetic experiments).
"""

from __future__ import annotations

from torch import Tensor, nn

from hydrarec.architectures.layers import Architecture, mlp, output_width
from hydrarec.config import ArchitectureConfig


class SingleTask(Architecture):
    def __init__(self, in_dim: int, n_tasks: int, cfg: ArchitectureConfig) -> None:
        super().__init__(in_dim, n_tasks, cfg)
        widths = [*cfg.hidden, *cfg.tower]
        self.towers = nn.ModuleList(mlp(in_dim, widths, cfg.dropout) for _ in range(n_tasks))
        self.out_dim = output_width(in_dim, widths)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [tower(x) for tower in self.towers]  # n_tasks x (B, out_dim)
