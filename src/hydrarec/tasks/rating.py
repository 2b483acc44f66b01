"""Explicit rating regression: a linear head whose bias starts at the global mean rating.

The global-mean bias is the baseline predictor of Koren, Bell & Volinsky, "Matrix Factorization
Techniques for Recommender Systems", IEEE Computer 2009 (r_ui = mu + ...): starting there, the
head only learns deviations. Trained with MSE; scored by RMSE (the Netflix Prize metric) and MAE.

With AutoRec paths (``model.autorec``, ``model.user_autorec``; issue 8) the task has more paths
than the head above: each AutoRec path predicts ``mu_k + W . h + b``, its own global mean plus
the dot product of its user and item blocks (``encoders/autorec.py``). Each path is trained on its
own squared error (they share no parameter: several models trained at once), and the prediction
is their blend ``(1 - a - b) head + a item-autoencoder + b user-autoencoder`` with the weights
``autorec_weight`` / ``user_autorec_weight`` chosen on validation. On ML100K-U1 validation this
beat summing the paths under one loss, where the head overfits before the autoencoder has learned
(benchmarks/results/ML100K-U1.md). A path whose encoded side has no ratings (a cold item for
I-AutoRec, a cold user for U-AutoRec) has the zero block, whose "has ratings" flag is 0: its
weight goes to the head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hydrarec.config import RatingTaskConfig, TaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import Batch
from hydrarec.tasks.base import Task, TaskContext, TaskInputs, masked_mean
from hydrarec.tasks.metrics import mae, rmse


class RatingTask(Task):
    """Predicts a rating on ``column_scale = (min, max)``; raw output unclipped, predict clips."""

    config = RatingTaskConfig

    def __init__(
        self,
        name: str,
        in_dim: int,
        column_scale: tuple[float, float],
        global_mean: float,
        mf_dim: int = 0,
        autorec_paths: tuple[tuple[str, int, float], ...] = (),
    ) -> None:
        """``autorec_paths``: (encoded side "item" or "user", block width, blend weight) of each
        AutoRec path, in the order of the side blocks (``TaskContext.side_paths``)."""
        super().__init__(name)
        low, high = column_scale
        if not low < high:
            raise ConfigError(f"task {name!r}: rating scale needs min < max, got {column_scale}")
        self.scale = (float(low), float(high))
        self.head = nn.Linear(in_dim, 1)
        nn.init.constant_(self.head.bias, float(global_mean))  # the bias IS the global mean mu
        self.autorec_paths = autorec_paths
        if autorec_paths:  # each AutoRec path's own global mean mu_k
            self.autorec_bias = nn.Parameter(torch.full((len(autorec_paths),), float(global_mean)))
        # the paths' blend weights, (P,): a buffer (it follows the module's device), not saved
        weights = torch.tensor([w for _, _, w in autorec_paths], dtype=torch.float32)
        self.path_weights: Tensor
        self.register_buffer("path_weights", weights, persistent=False)
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
        assert isinstance(cfg, RatingTaskConfig)  # build_task picks the class by cfg.kind
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
        weights = {"item": cfg.autorec_weight, "user": cfg.user_autorec_weight}
        paths = tuple((side, width, weights[side]) for side, width in ctx.side_paths)
        return cls(cfg.name, ctx.rep_dim, (low, high), mean, mf_dim, paths)

    @property
    def reads_vectors(self) -> bool:
        return self.mf_dim > 0  # the biases and the dot product of the MF paths

    def forward(self, inputs: TaskInputs) -> Tensor:
        """(B,); with P AutoRec paths (B, 1 + 2P): [head, each path, each path's flag]."""
        out = self.head(self._rep(inputs)).squeeze(-1)  # (B, H) -> (B,)
        if self.mf_dim:
            u, i = inputs.user, inputs.item  # (B, D) each
            out = out + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1)  # (B,)
            out = out + self.dot_scale * (u * i).sum(-1)  # (B,)
        if not self.autorec_paths:
            return out
        if inputs.side is None:
            raise ValueError(f"task {self.name!r} has AutoRec paths; the model gave no blocks")
        paths, flags, start = [], [], 0
        for k, (side, width, _) in enumerate(self.autorec_paths):
            user = inputs.side[0][:, start : start + width]  # (B, K + 1)
            item = inputs.side[1][:, start : start + width]  # (B, K + 1)
            paths.append(self.autorec_bias[k] + (user * item).sum(-1))  # (B,) mu_k + W . h + b
            flags.append((item if side == "item" else user)[:, -1])  # (B,) the [h, 1] block's 1
            start += width
        return torch.stack([out, *paths, *flags], dim=-1)  # (B, 1 + 2P)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        label, mask = self.labels(batch)
        if output.dim() == 1:
            return masked_mean((output - label) ** 2, mask)
        # each path on its own squared error: summed, the gradients stay apart
        paths = output[:, : 1 + len(self.autorec_paths)]  # (B, 1 + P)
        return masked_mean(((paths - label.unsqueeze(-1)) ** 2).sum(-1), mask)

    def predict(self, output: Tensor) -> Tensor:
        if output.dim() == 2:  # the blend; a path without ratings (flag 0) gives its weight away
            p = len(self.autorec_paths)
            w = self.path_weights.to(output.dtype) * output[:, 1 + p :]  # (B, P)
            output = (1.0 - w.sum(-1)) * output[:, 0] + (w * output[:, 1 : 1 + p]).sum(-1)
        return output.clamp(*self.scale)

    def blend_log(self, prediction: Tensor) -> Tensor:
        return (prediction / self.scale[1]).clamp(min=1e-9).log()  # log(rating / max)

    def metrics(self, pred: np.ndarray, label: np.ndarray, user: np.ndarray) -> dict[str, float]:
        return {"rmse": rmse(pred, label), "mae": mae(pred, label)}
