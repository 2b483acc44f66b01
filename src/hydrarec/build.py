"""Assemble a ``MultiTaskRecommender`` from a config and the fitted feature sizes.

The only place that knows which parts go where; the model itself receives ready-built parts.
"""

from __future__ import annotations

from hydrarec.architectures import build_architecture
from hydrarec.config import Config
from hydrarec.encoders.towers import ItemTower, UserTower
from hydrarec.features.batch import EntitySpec
from hydrarec.model import MultiTaskRecommender
from hydrarec.tasks import build_task


def build_model(
    cfg: Config,
    user_spec: EntitySpec,
    item_spec: EntitySpec,
    label_stats: dict[str, tuple[float, float, float]],
    n_items: int,
) -> MultiTaskRecommender:
    """``label_stats``: task name -> (min, max, mean) of its training labels."""
    dim = cfg.model.dim
    tower_tasks = [t for t in cfg.tasks if t.kind in ("rating", "binary")]
    architecture = build_architecture(cfg.model.architecture, 3 * dim, len(tower_tasks))
    rep_dim = int(getattr(architecture, "out_dim", dim))
    tasks = [
        build_task(
            t,
            rep_dim=rep_dim,
            dim=dim,
            user_spec=user_spec,
            item_spec=item_spec,
            label_stats=label_stats,
            n_items=n_items,
        )
        for t in cfg.tasks
    ]
    return MultiTaskRecommender(
        user_encoder=UserTower(user_spec, cfg.model),
        item_encoder=ItemTower(item_spec, cfg.model),
        architecture=architecture,
        tasks=tasks,
    )
