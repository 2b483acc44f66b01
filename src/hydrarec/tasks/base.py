"""The task contract (after tensorflow/recommenders ``tasks/``): each task owns head, loss, metrics.

A task receives ``TaskInputs`` from the model and returns LOGITS or raw outputs from ``forward``;
``loss`` turns them into a scalar; ``predict`` is the inference transform (sigmoid, clipping) and is
applied only outside training; ``metrics`` scores pointwise predictions in numpy, and
``evaluate`` says how the task is scored on held-out rows (``evaluation/evaluate.py`` hands it a
``HeldOut``; the evaluator knows no kind).

Labels: ``batch.labels[task.name]`` (B,) float32 and ``batch.label_mask[task.name]`` (B,) bool,
keyed by TASK NAME (rule-derived labels such as ``like = rating >= 4`` are computed upstream). A
missing mask means every row is labelled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from hydrarec.config import TaskConfig, TaskSection
from hydrarec.features.batch import Batch, EntityFeatures, EntitySpec


@dataclass
class TaskInputs:
    """What the model hands every task.

    rep: (B, H) the task's own representation from the multi-task architecture (its tower output);
         None for tasks with ``uses_tower = False``.
    user: (B, D) user vectors; item: (B, D) vectors of the interactions' items;
    items: (U, D) vectors of the batch's distinct items (rows of ``batch.items``); needed by
           retrieval only, None when scoring bare (user, item) pairs;
    batch: the batch itself, None when scoring bare pairs (no task's ``forward`` needs it today);
    side: the (B, S) user and item side blocks (the AutoRec path, ``encoders/autorec.py``), which
          a rating task turns into its second path; None for models without them.
    """

    user: Tensor  # (B, D)
    item: Tensor  # (B, D)
    items: Tensor | None = None  # (U, D)
    batch: Batch | None = None
    rep: Tensor | None = None  # (B, H)
    side: tuple[Tensor, Tensor] | None = None  # (B, S) user block, (B, S) item block


@dataclass(frozen=True)
class TaskContext:
    """Sizes and train statistics a task needs to build itself from its config.

    label_stats: task name (or label column) -> (min, max, mean) over train (rating scale, bias).
    """

    rep_dim: int  # H, width of the architecture's per-task representation
    dim: int  # D, width of the user / item vectors
    user_spec: EntitySpec
    item_spec: EntitySpec
    label_stats: dict[str, tuple[float, float, float]] | None
    n_items: int  # catalogue size
    # the AutoRec paths of the vectors' side blocks, in order: (side whose ratings are encoded,
    # "item" for I-AutoRec or "user" for U-AutoRec; width of the path's blocks); () for none
    side_paths: tuple[tuple[str, int], ...] = ()


@dataclass
class HeldOut:
    """What evaluation hands every task's ``evaluate``: held-out rows, the model's view of them."""

    users: np.ndarray  # (R,) each row's user (catalogue index)
    items: np.ndarray  # (R,) each row's item
    distinct_users: np.ndarray  # (U,) np.unique(users)
    labels: dict[str, np.ndarray]  # task name -> (R,) labels, NaN where a row has none
    predictions: dict[str, np.ndarray]  # task name -> (R,) ``predict`` of each row's pair
    # the retrieval metrics of the rows' items ranked by <user, item> among the catalogue (among
    # the held-out items on a cold-item split), computed when called
    ranking: Callable[[], dict[str, float]]
    # per model of an ensemble (one for a single model): its tasks by name and its vectors of the
    # distinct users (U, D) and of every item (I, D), side blocks left out
    members: list[tuple[dict[str, Task], Tensor, Tensor]]
    user_table: EntityFeatures  # every user's encoded features
    item_table: EntityFeatures  # every item's


class Task(nn.Module, ABC):
    """One objective of the multi-task model."""

    config: ClassVar[type[TaskSection]]  # the class of its [[tasks]] entries (config.py)
    kind: ClassVar[str]  # registry key, e.g. "rating": the ``kind`` of its config class
    uses_tower: ClassVar[bool] = True  # whether the architecture must give this task a ``rep``

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.config.model_fields["kind"].default  # each kind's name is written once

    @property
    def reads_vectors(self) -> bool:
        """Whether ``forward`` on pairs reads ``inputs.user`` / ``inputs.item`` (beyond ``rep``):
        stage two materialises the (B * n, D) pair vectors only for tasks that do."""
        return False

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: TaskConfig, ctx: TaskContext) -> Task:
        """Build the task from its config entry (``hydrarec.tasks.build_task`` calls this)."""

    @abstractmethod
    def forward(self, inputs: TaskInputs) -> Tensor:
        """Logits or raw outputs; (B,) for pointwise tasks."""

    @abstractmethod
    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Scalar training loss of ``forward``'s output."""

    def predict(self, output: Tensor) -> Tensor:
        """Inference transform of ``forward``'s output (identity unless a task says otherwise)."""
        return output

    def score_pairs(self, inputs: TaskInputs, dots: Tensor | None) -> Tensor | None:
        """(B,) ``predict`` of (user, item) pairs, or None for a task that scores no pair (a
        feature reconstruction). ``dots``: the pairs' ``u . i`` when the caller has them."""
        return self.predict(self(inputs)) if self.uses_tower else None

    def metrics(self, pred: np.ndarray, label: np.ndarray, user: np.ndarray) -> dict[str, float]:
        """Pointwise metrics of ``predict`` outputs, keys without the task prefix ({} if none)."""
        return {}

    def evaluate(self, held_out: HeldOut) -> dict[str, float]:
        """This task's metrics on held-out rows, keys without the task prefix: by default
        ``metrics`` of its predictions over the rows with a label."""
        label = held_out.labels[self.name]
        ok = ~np.isnan(label)
        return self.metrics(held_out.predictions[self.name][ok], label[ok], held_out.users[ok])

    def blend_log(self, prediction: Tensor) -> Tensor:
        """The log of this task's factor in stage two's score (``Recommender``, issue 20), from
        ``predict``'s (B,) output; kinds that stage two cannot blend raise."""
        raise ValueError(f"task {self.name!r} ({self.kind}) has no factor in a recommend blend")

    def _rep(self, inputs: TaskInputs) -> Tensor:
        if inputs.rep is None:
            raise ValueError(f"task {self.name!r} ({self.kind}) needs a tower representation")
        return inputs.rep

    def labels(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """This task's (B,) labels and (B,) bool mask; unlabelled rows hold 0, not NaN."""
        if self.name not in batch.labels:
            have = ", ".join(sorted(batch.labels)) or "none"
            raise KeyError(f"batch has no labels for task {self.name!r} (labels: {have})")
        label = batch.labels[self.name]
        mask = batch.label_mask.get(self.name)
        if mask is None:
            mask = torch.ones_like(label, dtype=torch.bool)
        # zero the unlabelled rows so a NaN placeholder cannot leak into the loss or its gradient
        return torch.where(mask, label, torch.zeros_like(label)), mask


def masked_mean(per_row: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``per_row`` (B,) over rows where ``mask`` (B,) is True.

    With no True row it is 0, still connected to the graph (gradient 0), so a batch without a
    task's labels needs no special case in the trainer.
    """
    kept = torch.where(mask, per_row, torch.zeros_like(per_row))
    return kept.sum() / mask.sum().clamp(min=1).to(per_row.dtype)
