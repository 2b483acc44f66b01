"""The trainer's optimizers: AdamW over the dense parameters (fused where torch offers it), in the
groups a model asks for, and SparseAdam over the sparse embedding tables (``training/sparse.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hydrarec.config import TrainConfig
from hydrarec.encoders.blocks import param_groups_of


def model_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The groups a model asks for (``model.param_groups()``: params + AdamW settings such as
    ``lr``), none when it asks for none. Defaults: ``train.weight_decay``, ``train.lr``."""
    return [{"weight_decay": weight_decay, **g} for g in param_groups_of(model)]


def clip_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The groups of parameters whose gradient norms are clipped separately: the model's own
    (``model.clip_groups()``, e.g. an ensemble's members), else all its parameters as one."""
    own = getattr(model, "clip_groups", None)
    return own() if callable(own) else [list(model.parameters())]  # type: ignore[no-any-return]


def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel over all parameters: a several times cheaper step than the
    per-parameter loop on CPU) where torch offers it; without one it raises, and the loop runs."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def optimizers(
    model: nn.Module, objective_params: list[Tensor], sparse_params: list[Tensor], cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """(AdamW, SparseAdam or None) for ``model`` trained under ``cfg``.

    AdamW groups: the model's own (``model.param_groups()``, e.g. fine-tuned language-model layers
    at their own learning rate), the rest of its dense parameters with ``train.weight_decay``, and
    the loss-weighting parameters (log-variances, GradNorm weights) without weight decay. The
    sparse tables' weights go to SparseAdam only.
    """
    own = model_param_groups(model, cfg.weight_decay)
    taken = {id(p) for p in sparse_params} | {id(p) for g in own for p in g["params"]}
    dense = [p for p in model.parameters() if id(p) not in taken]
    groups = [{"params": dense, "weight_decay": cfg.weight_decay}, *own]
    if objective_params:
        groups.append({"params": objective_params, "weight_decay": 0.0})
    sparse = torch.optim.SparseAdam(sparse_params, lr=cfg.lr) if sparse_params else None
    return adamw(groups, cfg.lr), sparse
