"""Assemble a ``MultiTaskRecommender`` from a config and the fitted feature sizes.

The only place that knows which parts go where; the model itself receives ready-built parts.
"""

from __future__ import annotations

from torch import nn

from hydrarec.architectures import build_architecture
from hydrarec.config import Config
from hydrarec.encoders.autorec import ItemAutoRec, ItemRatings, UserAutoRec, WithBlock
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
    ratings: ItemRatings | None = None,
) -> MultiTaskRecommender:
    """``label_stats``: task name -> (min, max, mean) of its training labels.

    ``ratings``: the rating task's train ratings by item, the bags of the AutoRec block
    (``model.autorec``); None when loading a run, whose weights carry them.
    """
    dim = cfg.model.dim
    tower_tasks = [t for t in cfg.tasks if t.kind in ("rating", "binary")]
    architecture = build_architecture(cfg.model.architecture, 3 * dim, len(tower_tasks))
    rep_dim = int(getattr(architecture, "out_dim", dim))
    ae = cfg.model.autorec
    side_dim = ae.hidden + 1 if ae.hidden else 0  # the AutoRec blocks' width (encoders/autorec.py)
    tasks = [
        build_task(
            t,
            rep_dim=rep_dim,
            dim=dim,
            user_spec=user_spec,
            item_spec=item_spec,
            label_stats=label_stats,
            n_items=n_items,
            side_dim=side_dim,
        )
        for t in cfg.tasks
    ]
    user_encoder: nn.Module = UserTower(user_spec, cfg.model)
    item_encoder: nn.Module = ItemTower(item_spec, cfg.model)
    if side_dim:  # the I-AutoRec path, appended to both vectors
        item_block = ItemAutoRec(item_spec.n_ids, user_spec.n_ids, ae, ratings)
        item_encoder = WithBlock(item_encoder, item_block)
        user_encoder = WithBlock(user_encoder, UserAutoRec(user_spec.n_ids, ae), strip=side_dim)
    return MultiTaskRecommender(
        user_encoder=user_encoder,
        item_encoder=item_encoder,
        architecture=architecture,
        tasks=tasks,
        side_dim=side_dim,
    )
