"""Learning-rate schedule: linear warm-up, then cosine decay to 10 % of the peak."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_share: float, floor: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplier 0 -> 1 over the warm-up steps, then 1 -> ``floor`` along a cosine.

    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> s = warmup_cosine(opt, total_steps=10, warmup_share=0.2)
    >>> [round(s.lr_lambdas[0](i), 3) for i in (0, 1, 2, 10)]
    [0.5, 1.0, 1.0, 0.1]
    """
    warmup = max(1, round(total_steps * warmup_share)) if warmup_share > 0 else 0
    decay = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / decay)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
