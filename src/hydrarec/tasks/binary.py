"""Binary feedback (click, like = rating >= 4, ...): a linear head on the task's representation.

Returns logits; the loss is ``BCEWithLogits`` (log-sum-exp stable, unlike sigmoid + BCELoss) over
labelled rows; ``predict`` applies the sigmoid. Metrics: AUC, GAUC (per-user AUC weighted by
impressions, Zhou et al. KDD 2018) and log loss.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from hydrarec.config import BinaryTaskConfig, TaskConfig
from hydrarec.features.batch import Batch
from hydrarec.tasks.base import Task, TaskContext, TaskInputs, masked_mean
from hydrarec.tasks.metrics import auc, gauc, logloss


class BinaryTask(Task):
    """Probability that the label is 1; forward gives its logit."""

    config = BinaryTaskConfig

    def __init__(self, name: str, in_dim: int) -> None:
        super().__init__(name)
        self.head = nn.Linear(in_dim, 1)

    @classmethod
    def from_config(cls, cfg: TaskConfig, ctx: TaskContext) -> BinaryTask:
        assert isinstance(cfg, BinaryTaskConfig)  # build_task picks the class by cfg.kind
        return cls(cfg.name, ctx.rep_dim)

    def forward(self, inputs: TaskInputs) -> Tensor:
        return self.head(self._rep(inputs)).squeeze(-1)  # (B, H) -> (B,) logits

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        label, mask = self.labels(batch)
        per_row = F.binary_cross_entropy_with_logits(
            output, label.to(output.dtype), reduction="none"
        )
        return masked_mean(per_row, mask)

    def predict(self, output: Tensor) -> Tensor:
        return output.sigmoid()

    def blend_log(self, prediction: Tensor) -> Tensor:
        return prediction.clamp(min=1e-9).log()  # log p

    def metrics(self, pred: np.ndarray, label: np.ndarray, user: np.ndarray) -> dict[str, float]:
        return {
            "auc": auc(pred, label),
            "gauc": gauc(pred, label, user),
            "logloss": logloss(pred, label),
        }
