"""Tasks: each owns its head, loss and metrics. An explicit registry, kind -> class.

Adding a task kind is one file (a ``Task`` subclass with ``from_config``, ``evaluate`` where
its metrics are not the default pointwise ones), its config class (``config.TaskConfig``, where
its name is written) and one entry here.
"""

from __future__ import annotations

from hydrarec.config import TaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntitySpec
from hydrarec.tasks.base import HeldOut, Task, TaskContext, TaskInputs, masked_mean
from hydrarec.tasks.binary import BinaryTask
from hydrarec.tasks.joint import JointLoss
from hydrarec.tasks.rating import RatingTask
from hydrarec.tasks.reconstruction import ReconstructionTask
from hydrarec.tasks.retrieval import RetrievalTask, sampled_softmax_loss

TASKS: dict[str, type[Task]] = {
    task.kind: task for task in (RetrievalTask, RatingTask, BinaryTask, ReconstructionTask)
}


def build_task(
    cfg: TaskConfig,
    *,
    rep_dim: int,
    dim: int,
    user_spec: EntitySpec,
    item_spec: EntitySpec,
    label_stats: dict[str, tuple[float, float, float]] | None,
    n_items: int,
    side_paths: tuple[tuple[str, int], ...] = (),
) -> Task:
    """The task of one ``[[tasks]]`` entry.

    rep_dim: width H of the architecture's per-task representation (rating / binary heads);
    dim: width D of the user / item vectors (reconstruction decoders);
    label_stats: task name -> (min, max, mean) of its train labels (rating scale and bias; the
        label column is accepted as the key too);
    n_items: catalogue size (``full_softmax = None`` means full softmax when n_items <= 5000);
    side_paths: the AutoRec paths in the vectors' side blocks, (encoded side, width) each.
    """
    if cfg.kind not in TASKS:
        raise ConfigError(
            f"task {cfg.name!r}: unknown kind {cfg.kind!r} (allowed: {', '.join(TASKS)})"
        )
    ctx = TaskContext(rep_dim, dim, user_spec, item_spec, label_stats, n_items, side_paths)
    return TASKS[cfg.kind].from_config(cfg, ctx)


__all__ = [
    "TASKS",
    "BinaryTask",
    "HeldOut",
    "JointLoss",
    "RatingTask",
    "ReconstructionTask",
    "RetrievalTask",
    "Task",
    "TaskContext",
    "TaskInputs",
    "build_task",
    "masked_mean",
    "sampled_softmax_loss",
]
