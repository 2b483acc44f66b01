"""A deep ensemble: ``model.ensemble = K`` copies of the model, each from its own initial weights,
trained together on the same batches (Lakshminarayanan et al., "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017).

    user  = [user_1, ..., user_K]      item = [item_1, ..., item_K]     (K x W channels)
    retrieval score  <user, item> = sum_k <user_k, item_k>
    rating, binary   the mean of the members' predictions (ratings on their scale, probabilities)
    loss             per task, the SUM of the members' losses

Since the ensemble's retrieval score is one dot product over the concatenated vectors, the
index, full-ranking evaluation, explanations and serving work on it unchanged. The loss is a sum,
so each member's gradient is exactly the one it would get alone, and the trainer clips each
member's gradient norm on its own (``clip_groups``). Members differ in their initial weights and
their dropout draws; they share the data order, the features and a frozen text encoder's vectors.
A user's history holds ensemble item vectors, so member k reads channels ``k W : (k + 1) W``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hydrarec.features.batch import Batch, EntityFeatures
from hydrarec.model.multitask import MultiTaskRecommender
from hydrarec.tasks.base import Task


class Ensemble(nn.Module):
    """K ``MultiTaskRecommender`` members with the same config behind the same interface."""

    def __init__(self, members: list[MultiTaskRecommender], member_dim: int) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.member_dim = member_dim  # W: channels of one member's vectors (dim + side block)

    def _members(self) -> list[MultiTaskRecommender]:
        return list(self.members)  # type: ignore[arg-type]

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        """Member k's channels of ensemble vectors (..., K W): K tensors (..., W)."""
        return x.split(self.member_dim, dim=-1)

    # -- what callers read of a model --------------------------------------------------------
    @property
    def tasks(self) -> nn.ModuleDict:
        """Member 0's tasks: every member has the same names, kinds and metrics."""
        return self._members()[0].tasks

    def task_items(self) -> list[tuple[str, Task]]:
        return self._members()[0].task_items()

    def member_channels(
        self, user: Tensor, item: Tensor
    ) -> list[tuple[MultiTaskRecommender, Tensor, Tensor]]:
        """Each member with its channels of ``user`` and ``item``."""
        return list(zip(self._members(), self._split(user), self._split(item), strict=True))

    # -- the two towers ---------------------------------------------------------------------
    def encode_items(
        self, items: EntityFeatures, leave_out: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(U, K W)."""
        return torch.cat([m.encode_items(items, leave_out) for m in self._members()], dim=-1)

    def encode_users(
        self,
        users: EntityFeatures,
        history: Tensor,
        history_mask: Tensor,
        history_pos: Tensor | None = None,
        leave_out: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """(B, K W); ``history`` (B, N, K W) holds ensemble item vectors."""
        per_member = [
            m.encode_users(users, h, history_mask, history_pos, leave_out)
            for m, h in zip(self._members(), self._split(history), strict=True)
        ]
        return torch.cat(per_member, dim=-1)

    # -- training -------------------------------------------------------------------------
    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """Per task, the sum of the members' losses."""
        total: dict[str, Tensor] = {}
        for member in self._members():
            for name, loss in member.losses(batch).items():
                total[name] = total[name] + loss if name in total else loss
        return total

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for m in self._members() for p in m.shared_parameters()]

    def param_groups(self) -> list[dict[str, Any]]:
        return [g for m in self._members() for g in m.param_groups()]

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """One group per member: each member's gradient norm is clipped as if it trained alone."""
        return [list(m.parameters()) for m in self._members()]

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_pairs(self, user: Tensor, item: Tensor) -> dict[str, Tensor]:
        """The members' ``predict_pairs`` combined (see the module doc)."""
        members = self.member_channels(user, item)
        return self.combine([m.predict_pairs(u, i) for m, u, i in members])

    def combine(self, outs: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The members' predictions (one dict each) as the ensemble's: retrieval scores summed,
        the others averaged."""
        kinds = {name: task.kind for name, task in self.task_items()}
        combined = {}
        for name in outs[0]:
            stacked = torch.stack([o[name] for o in outs])  # (K, B)
            combined[name] = stacked.sum(0) if kinds[name] == "retrieval" else stacked.mean(0)
        return combined


Model = MultiTaskRecommender | Ensemble  # what build_model returns and a run holds


__all__ = ["Ensemble", "Model"]
