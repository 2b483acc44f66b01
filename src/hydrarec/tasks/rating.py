"""Explicit rating regression: a linear head whose bias starts at the global mean rating.

The global-mean bias is the baseline predictor of Koren, Bell & Volinsky, "Matrix Factorization
Techniques for Recommender Systems", IEEE Computer 2009 (r_ui = mu + ...): starting there, the
head only learns deviations. Trained with MSE; scored by RMSE (the Netflix Prize metric) and MAE.

With an AutoRec block (``model.autorec``, issue 8) the task has two paths: the head above and the
autoencoder's, ``mu' + W_u . h_i + b_u`` (the dot product of the user and item side blocks). Each
path is trained on its own squared error (the two share no parameter: two models trained at
once), and the prediction is their blend ``(1 - a) head + a autorec``, ``a = autorec_weight``,
chosen on validation (an ensemble as in GLocal-K / AutoRec follow-ups). On ML100K-U1 validation
this beat summing the two paths under one loss, where the head overfits before the autoencoder
has learned (benchmarks/results/ML100K-U1.md). An item whose bag is empty (cold) has the zero
block, whose last channel, the "has ratings" flag, is 0: its prediction is the head's alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hydrarec.config import TaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import Batch
from hydrarec.tasks.base import Task, TaskContext, TaskInputs, masked_mean


class RatingTask(Task):
    """Predicts a rating on ``column_scale = (min, max)``; raw output unclipped, predict clips."""

    kind = "rating"

    def __init__(
        self,
        name: str,
        in_dim: int,
        column_scale: tuple[float, float],
        global_mean: float,
        mf_dim: int = 0,
        autorec_weight: float | None = None,
    ) -> None:
        """``autorec_weight``: the blend weight of the AutoRec path; None: no such path."""
        super().__init__(name)
        low, high = column_scale
        if not low < high:
            raise ConfigError(f"task {name!r}: rating scale needs min < max, got {column_scale}")
        self.scale = (float(low), float(high))
        self.head = nn.Linear(in_dim, 1)
        nn.init.constant_(self.head.bias, float(global_mean))  # the bias IS the global mean mu
        self.autorec_weight = autorec_weight
        if autorec_weight is not None:  # the AutoRec path's own global mean mu'
            self.autorec_bias = nn.Parameter(torch.tensor(float(global_mean)))
        # Biased-MF paths (Koren et al. 2009: r = mu + b_u + b_i + p_u.q_i) read from the user and
        # item vectors (width ``mf_dim``); zero at start, so they only add what the data supports.
        self.mf_dim = mf_dim
        if mf_dim:
            self.user_bias = nn.Linear(mf_dim, 1, bias=False)
            self.item_bias = nn.Linear(mf_dim, 1, bias=False)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
            self.dot_scale = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, cfg: TaskConfig, ctx: TaskContext) -> RatingTask:
        # statistics are keyed like the labels, by task name; the label column is accepted too
        stats = ctx.label_stats or {}
        key = cfg.name if cfg.name in stats else cfg.column
        if key not in stats:
            have = ", ".join(sorted(stats)) or "none"
            raise ConfigError(
                f"task {cfg.name!r}: no train statistics for the task or its column "
                f"{cfg.column!r} (statistics for: {have})"
            )
        low, high, mean = stats[key]
        mf_dim = ctx.dim if cfg.mf_paths else 0
        autorec = cfg.autorec_weight if ctx.side_dim else None
        return cls(cfg.name, ctx.rep_dim, (low, high), mean, mf_dim, autorec)

    def forward(self, inputs: TaskInputs) -> Tensor:
        """(B,); with the AutoRec path (B, 3): [head path, AutoRec path, has-ratings flag]."""
        out = self.head(self._rep(inputs)).squeeze(-1)  # (B, H) -> (B,)
        if self.mf_dim:
            u, i = inputs.user, inputs.item  # (B, D) each
            out = out + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1)  # (B,)
            out = out + self.dot_scale * (u * i).sum(-1)  # (B,)
        if self.autorec_weight is None:
            return out
        if inputs.side is None:
            raise ValueError(f"task {self.name!r} has an AutoRec path; the model gave no blocks")
        user_block, item_block = inputs.side  # (B, S) each: [W_u, b_u] and [h_i, 1]
        autorec = self.autorec_bias + (user_block * item_block).sum(-1)  # (B,)
        return torch.stack([out, autorec, item_block[:, -1]], dim=-1)  # (B, 3)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        label, mask = self.labels(batch)
        if output.dim() == 1:
            return masked_mean((output - label) ** 2, mask)
        # each path on its own squared error: summed, the gradients stay apart
        errors = (output[:, :2] - label.unsqueeze(-1)) ** 2  # (B, 2)
        return masked_mean(errors.sum(-1), mask)

    def predict(self, output: Tensor) -> Tensor:
        if output.dim() == 2:  # the blend; items without ratings (flag 0) get the head alone
            a = float(self.autorec_weight or 0.0) * output[:, 2]  # (B,)
            output = (1.0 - a) * output[:, 0] + a * output[:, 1]  # (B,)
        return output.clamp(*self.scale)

    def metrics(self, pred: np.ndarray, label: np.ndarray, user: np.ndarray) -> dict[str, float]:
        # imported here: evaluation sits below tasks in the layering, and only its pure, import-free
        # metrics module is used (a module-level import could cycle through evaluation/__init__)
        from hydrarec.evaluation import metrics as m

        return {"rmse": m.rmse(pred, label), "mae": m.mae(pred, label)}
