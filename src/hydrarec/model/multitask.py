"""The multi-task recommender: two towers, a multi-task architecture, and one head per task.

Parts are passed in by role (after torchrec's ``DLRM``): swapping MMoE for PLE is one argument.

    items  = item_tower(distinct items of the batch)             (U, D)
    user   = user_tower(user features, history item vectors)     (B, D)
    x      = [user, item, user * item]                           (B, 3D)  (model.pair_input)
    reps   = architecture(x)                                     one (B, H) per ranking task
    logits = task(rep | user, item, items)                       per task

The history items are encoded by the item tower, so both towers share item knowledge. The model
returns raw outputs (logits); ``Task.predict`` applies sigmoid / clipping at inference only.

Side block (``side_dim = S > 0``, the AutoRec path of ``encoders/autorec.py``): the last S
channels of every user and item vector are a block that the architecture does not read; the tasks
get the first D channels as ``user`` / ``item`` and the two blocks as ``TaskInputs.side``.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from hydrarec.encoders.blocks import gather_rows, param_groups_of
from hydrarec.features.batch import Batch, EntityFeatures
from hydrarec.tasks.base import Task, TaskInputs


class MultiTaskRecommender(nn.Module):
    def __init__(
        self,
        user_encoder: nn.Module,
        item_encoder: nn.Module,
        architecture: nn.Module,
        tasks: list[Task],
        side_dim: int = 0,
        cross: bool = True,
    ) -> None:
        super().__init__()
        self.side_dim = side_dim  # S: trailing channels of both vectors (see the module doc)
        self.cross = cross  # x = [user, item, user * item], else [user, item] (model.pair_input)
        self.user_encoder = user_encoder
        self.item_encoder = item_encoder
        self.architecture = architecture
        self.tasks = nn.ModuleDict({t.name: t for t in tasks})
        # the ranking tasks read one architecture output each, in this order
        self.tower_tasks = [t.name for t in tasks if t.uses_tower]

    # -- the two towers ---------------------------------------------------------------------
    def encode_items(
        self, items: EntityFeatures, leave_out: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(U, D); ``leave_out`` (user ids, rows of ``items``): pairs a side block must not read."""
        if leave_out is None:
            return self.item_encoder(items)  # (U, D)
        return self.item_encoder(items, leave_out=leave_out)  # (U, D)

    def encode_users(
        self,
        users: EntityFeatures,
        history: Tensor,
        history_mask: Tensor,
        history_pos: Tensor | None = None,
        leave_out: tuple[Tensor, Tensor] | None = None,
        history_segments: Tensor | None = None,
    ) -> Tensor:
        """(B, D); ``history_pos``, ``history_segments``: window examples, see ``Batch``;
        ``leave_out`` (item ids, rows of ``users``): pairs a side block must not read."""
        args = (history, history_mask) + (() if history_pos is None else (history_pos,))
        args += () if history_segments is None else (history_segments,)  # packed windows
        if leave_out is None:
            return self.user_encoder(users, *args)  # (B, D)
        return self.user_encoder(users, *args, leave_out=leave_out)  # (B, D)

    # -- training -------------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        # side blocks read the train ratings of items and users: they leave out the batch's own
        # pairs, so they never see a rating they are trained to predict (encoders/autorec.py)
        own_items = own_users = None
        if self.side_dim:
            own_items = (batch.users.ids, batch.item_pos)  # user id, row in batch.items
            rows = torch.arange(len(batch.item_pos), device=batch.item_pos.device)
            own_users = (batch.items.ids[batch.item_pos], rows)  # item id, row in batch.users
        items = self.encode_items(batch.items, own_items)  # (U, D)
        item = gather_rows(items, batch.item_pos)  # (B, D)
        history = gather_rows(items, batch.history)  # (B, N, D), or (W, N, D) windows
        user = self.encode_users(
            batch.users,
            history,
            batch.history_mask,
            batch.history_pos,
            own_users,
            batch.history_segments,
        )  # (B, D)
        return self.heads(user, item, items, batch)

    def heads(
        self, user: Tensor, item: Tensor, items: Tensor | None, batch: Batch | None
    ) -> dict[str, Tensor]:
        """Every task's raw output for (user, item) pairs given their vectors."""
        user, item, side = self.split(user, item)
        items = None if items is None else self.split(items, items)[0]
        reps = self.rank_representations(user, item)
        out = {}
        for name, task in self.task_items():
            inputs = TaskInputs(user, item, items, batch, rep=reps.get(name), side=side)
            out[name] = task(inputs)
        return out

    def split(
        self, user: Tensor, item: Tensor
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """(user (B, D), item (B, D), (user block, item block) (B, S) each or None)."""
        if not self.side_dim:
            return user, item, None
        d = user.shape[-1] - self.side_dim
        return user[..., :d], item[..., :d], (user[..., d:], item[..., d:])

    def task_items(self) -> list[tuple[str, Task]]:
        return [(name, cast(Task, task)) for name, task in self.tasks.items()]

    def member_channels(
        self, user: Tensor, item: Tensor
    ) -> list[tuple[MultiTaskRecommender, Tensor, Tensor]]:
        """The models behind ``user`` and ``item`` vectors, with their channels: this one, whole
        (an ``Ensemble`` has one part per member)."""
        return [(self, user, item)]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The output layers of the two towers, which every task depends on (for GradNorm)."""
        params: list[nn.Parameter] = []
        for tower in (self.user_encoder, self.item_encoder):
            linears = [m for m in tower.modules() if isinstance(m, nn.Linear)]
            params += list(linears[-1].parameters()) if linears else []
        return params

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups with their own optimizer settings, e.g. the item tower's fine-tuned
        language-model layers at ``model.text.finetune_lr``; the trainer puts every other
        parameter in its default group (it reads the settings, not where they come from)."""
        return param_groups_of(self.user_encoder, self.item_encoder)

    def rank_representations(self, user: Tensor, item: Tensor) -> dict[str, Tensor]:
        if not self.tower_tasks:
            return {}
        if self.cross:
            x = torch.cat([user, item, user * item], dim=-1)  # (B, 3D)
        else:
            x = torch.cat([user, item], dim=-1)  # (B, 2D)
        reps = self.architecture(x)  # n_tasks x (B, H)
        return dict(zip(self.tower_tasks, reps, strict=True))

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """One scalar loss per task; the trainer combines them with a ``JointLoss``."""
        out = self(batch)
        return {name: task.loss(out[name], batch) for name, task in self.task_items()}

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_pairs(
        self,
        user: Tensor,
        item: Tensor,
        reps: dict[str, Tensor] | None = None,
        dots: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Predictions of the pointwise tasks and the retrieval score for (user, item) pairs:
        ratings on their scale, probabilities for binary tasks, the dot product for retrieval.
        ``reps`` and ``dots``: the architecture's outputs and ``u . i`` of these pairs, when the
        caller computed them another way (stage two, ``recommend/rerank.py``)."""
        user, item, side = self.split(user, item)
        reps = self.rank_representations(user, item) if reps is None else reps
        out: dict[str, Tensor] = {}
        for name, task in self.task_items():
            inputs = TaskInputs(user, item, rep=reps.get(name), side=side)
            score = task.score_pairs(inputs, dots)  # (B,)
            if score is not None:
                out[name] = score
        return out
