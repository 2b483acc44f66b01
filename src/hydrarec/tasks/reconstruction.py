"""The autoencoder objective: reconstruct an entity's feature from its representation.

A decoder MLP maps the user's (or the interaction item's) vector back to one of its features, so
the shared representation must keep that information (the reconstruction term of autoencoder-based
recommenders, e.g. Sedhain et al., "AutoRec", WWW 2015; Wang et al., "Collaborative Deep
Learning", KDD 2015, reconstructs item content from the item representation).

Targets, built from the encoded batch:
- multi-hot feature: dense (N, V) 0/1 vector of the row's tokens, V = ``spec.multi_hot[feature]``;
- categorical feature: one-hot (N, V), V = ``spec.categorical[feature]``;
- ``feature = "numeric"``: the (N, F) scaled numeric vector (MSE only).
Columns 0 (padding) and 1 (out of vocabulary) carry no information and are left out of the loss;
the output keeps all V columns so that column j is token j.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydrarec.config import ReconstructionTaskConfig, TaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import Batch, EntityFeatures, EntitySpec
from hydrarec.tasks.base import HeldOut, Task, TaskContext, TaskInputs

NUMERIC = "numeric"  # the feature name that selects the numeric vector
RESERVED = 2  # vocabulary indices 0 (padding) and 1 (out of vocabulary)


def available_features(spec: EntitySpec) -> list[str]:
    """Feature names a reconstruction task can target for an entity with this spec."""
    return [*spec.categorical, *spec.multi_hot] + ([NUMERIC] if spec.n_numeric else [])


class ReconstructionTask(Task):
    """Decodes ``inputs.user`` or ``inputs.item`` (B, in_dim) into the feature's (B, V) outputs."""

    config = ReconstructionTaskConfig
    uses_tower = False

    def __init__(
        self,
        name: str,
        entity: Literal["user", "item"],
        feature: str,
        spec: EntitySpec,
        in_dim: int,
        loss: Literal["mse", "bce"],
        hidden: int | None = None,
    ) -> None:
        super().__init__(name)
        if feature == NUMERIC and spec.n_numeric:
            self.source, width = "numeric", spec.n_numeric
        elif feature in spec.multi_hot:
            self.source, width = "multi_hot", spec.multi_hot[feature]
        elif feature in spec.categorical:
            self.source, width = "categorical", spec.categorical[feature]
        else:
            have = ", ".join(available_features(spec)) or "none"
            raise ConfigError(
                f"task {name!r}: {entity} feature {feature!r} cannot be reconstructed "
                f"(available {entity} features: {have})"
            )
        if self.source == "numeric" and loss != "mse":
            raise ConfigError(f"task {name!r}: numeric features are real-valued; set loss = 'mse'")
        self.entity = entity
        self.feature = feature
        self.loss_kind = loss
        self.width = width  # V
        hidden = hidden or in_dim
        self.decoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, width))

    @classmethod
    def from_config(cls, cfg: TaskConfig, ctx: TaskContext) -> ReconstructionTask:
        assert isinstance(cfg, ReconstructionTaskConfig)  # build_task picks the class by cfg.kind
        spec = ctx.user_spec if cfg.entity == "user" else ctx.item_spec
        return cls(cfg.name, cfg.entity, str(cfg.feature), spec, ctx.dim, cfg.loss)

    def forward(self, inputs: TaskInputs) -> Tensor:
        vec = inputs.user if self.entity == "user" else inputs.item  # (B, D)
        return self.decoder(vec)  # (B, V) logits (bce) or values (mse)

    def target(self, batch: Batch) -> Tensor:
        """(B, V) float32 target of each interaction's user or item."""
        if self.entity == "user":
            return self.target_of(batch.users)
        return self.target_of(batch.items, batch.item_pos)

    def target_of(self, feats: EntityFeatures, rows: Tensor | None = None) -> Tensor:
        """(B, V) target of the entities at ``rows`` of ``feats`` (all rows when None)."""
        sel: Tensor | slice = slice(None) if rows is None else rows  # (B,)
        if self.source == "numeric":
            assert feats.numeric is not None  # guaranteed by spec.n_numeric > 0
            return feats.numeric[sel].float()  # (B, F)
        if self.source == "categorical":
            tokens = feats.categorical[self.feature][sel].unsqueeze(1)  # (B,) -> (B, 1)
        else:
            tokens = feats.multi_hot[self.feature][sel]  # (B, L)
        dense = torch.zeros(tokens.shape[0], self.width, device=tokens.device)  # (B, V)
        dense.scatter_(1, tokens, 1.0)
        dense[:, :RESERVED] = 0.0  # padding and OOV are not features
        return dense

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Mean elementwise MSE or BCE-with-logits over rows and (non-reserved) columns."""
        return self._loss(output, self.target(batch))

    def _loss(self, output: Tensor, target: Tensor) -> Tensor:
        out = output.float()
        if self.source != "numeric":  # drop the padding and OOV columns
            out, target = out[:, RESERVED:], target[:, RESERVED:]
        if self.loss_kind == "mse":
            return F.mse_loss(out, target)
        return F.binary_cross_entropy_with_logits(out, target)

    @torch.no_grad()
    def vector_loss(self, vectors: Tensor, feats: EntityFeatures) -> float:
        """Reconstruction loss of entities given their representations (B, D) and features."""
        return float(self._loss(self.decoder(vectors), self.target_of(feats)))

    def evaluate(self, held_out: HeldOut) -> dict[str, float]:
        """Reconstruction loss of the held-out rows' distinct items (or users); an ensemble's is
        the mean of its members' losses."""
        item = self.entity == "item"
        rows = torch.as_tensor(np.unique(held_out.items) if item else held_out.distinct_users)
        feats = (held_out.item_table if item else held_out.user_table).gather(rows)
        losses = []
        for tasks, users, items in held_out.members:
            vectors = items[rows] if item else users  # users: the distinct users', in order
            own = tasks[self.name]
            assert isinstance(own, ReconstructionTask)  # a member's task of this name
            losses.append(own.vector_loss(vectors, feats.to(vectors.device)))
        return {"loss": float(np.mean(losses))}

    def predict(self, output: Tensor) -> Tensor:
        """Probabilities for a BCE decoder, values for an MSE one."""
        return output.sigmoid() if self.loss_kind == "bce" else output
