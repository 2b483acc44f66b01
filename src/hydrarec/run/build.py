"""Assemble a ``MultiTaskRecommender`` (or an ``Ensemble`` of them) from a config and the fitted
feature sizes.

The only place that knows which parts go where; the model itself receives ready-built parts.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from hydrarec.architectures import build_architecture
from hydrarec.config import Config
from hydrarec.encoders.autorec import BagEncoder, Decoder, RatingBags, WithBlocks
from hydrarec.encoders.text_tuning import TunedTextLayers
from hydrarec.encoders.towers import ItemTower, UserTower
from hydrarec.features.batch import EntitySpec
from hydrarec.features.text_model import top_layers
from hydrarec.model.ensemble import Ensemble, Model
from hydrarec.model.multitask import MultiTaskRecommender
from hydrarec.run.data import TrainData
from hydrarec.tasks import build_task


def build_model(
    cfg: Config,
    user_spec: EntitySpec,
    item_spec: EntitySpec,
    label_stats: dict[str, tuple[float, float, float]],
    n_items: int,
    bags: dict[str, RatingBags] | None = None,
) -> Model:
    """``label_stats``: task name -> (min, max, mean) of its training labels.

    ``bags``: the rating task's train ratings by item ("item") and by user ("user"), the inputs
    of the AutoRec paths (``model.autorec``, ``model.user_autorec``); None when loading a run,
    whose weights carry them. With ``model.ensemble = K > 1``, K members built one after the
    other, so each draws its own initial weights.
    """
    args = (cfg, user_spec, item_spec, label_stats, n_items, bags)
    if cfg.model.ensemble == 1:
        return build_member(*args)
    members = [build_member(*args) for _ in range(cfg.model.ensemble)]
    return Ensemble(members, member_dim=cfg.model.dim + members[0].side_dim)


def build_member(
    cfg: Config,
    user_spec: EntitySpec,
    item_spec: EntitySpec,
    label_stats: dict[str, tuple[float, float, float]],
    n_items: int,
    bags: dict[str, RatingBags] | None = None,
) -> MultiTaskRecommender:
    """One model: towers, architecture, tasks (``build_model``'s arguments)."""
    dim = cfg.model.dim
    tower_tasks = [t for t in cfg.tasks if t.labelled]
    cross = cfg.model.pair_input == "concat_product"
    in_dim = (3 if cross else 2) * dim  # [user, item, user * item] or [user, item]
    architecture = build_architecture(cfg.model.architecture, in_dim, len(tower_tasks))
    rep_dim = int(getattr(architecture, "out_dim", dim))
    item_blocks, user_blocks, side_paths = autorec_blocks(cfg, user_spec, item_spec, bags or {})
    tasks = [
        build_task(
            t,
            rep_dim=rep_dim,
            dim=dim,
            user_spec=user_spec,
            item_spec=item_spec,
            label_stats=label_stats,
            n_items=n_items,
            side_paths=side_paths,
        )
        for t in cfg.tasks
    ]
    user_encoder: nn.Module = UserTower(user_spec, cfg.model)
    item_encoder: nn.Module = ItemTower(item_spec, cfg.model, tuned_text_layers(cfg, item_spec))
    side_dim = sum(width for _, width in side_paths)
    if side_dim:  # the AutoRec blocks, appended to both vectors
        item_encoder = WithBlocks(item_encoder, item_blocks)
        user_encoder = WithBlocks(user_encoder, user_blocks, strip=side_dim)
    return MultiTaskRecommender(
        user_encoder=user_encoder,
        item_encoder=item_encoder,
        architecture=architecture,
        tasks=tasks,
        side_dim=side_dim,
        cross=cross,
    )


def tuned_text_layers(cfg: Config, item_spec: EntitySpec) -> TunedTextLayers | None:
    """The item tower's fine-tuned text layers, initialised from the language model's last
    ``model.text.finetune_layers`` (each call a fresh copy); None unless the items have text.
    A run's weights replace the copy when it is loaded, which still reads the model for the
    layers' shapes (the text itself comes from the run's saved token states)."""
    if not item_spec.text_dim or cfg.model.text.finetune_layers == 0:
        return None
    init = top_layers(cfg.model.text)
    return TunedTextLayers(init.layers, init.pooling, init.normalize)


def autorec_blocks(
    cfg: Config, user_spec: EntitySpec, item_spec: EntitySpec, bags: dict[str, RatingBags]
) -> tuple[list[nn.Module], list[nn.Module], tuple[tuple[str, int], ...]]:
    """The item tower's and the user tower's AutoRec blocks, and each path's (bag side, width).

    I-AutoRec (``model.autorec``): the item's bag is encoded, the user has a decoder row;
    U-AutoRec (``model.user_autorec``): the other way round. Block k of one tower pairs with
    block k of the other (``encoders/autorec.py``).
    """
    items, users = item_spec.n_ids, user_spec.n_ids
    item_blocks: list[nn.Module] = []
    user_blocks: list[nn.Module] = []
    paths: list[tuple[str, int]] = []
    if cfg.model.autorec.hidden:
        ae = cfg.model.autorec
        item_blocks.append(BagEncoder(items, users, ae, bags.get("item")))
        user_blocks.append(Decoder(users, ae))
        paths.append(("item", ae.hidden + 1))
    if cfg.model.user_autorec.hidden:
        ae = cfg.model.user_autorec
        item_blocks.append(Decoder(items, ae))
        user_blocks.append(BagEncoder(users, items, ae, bags.get("user")))
        paths.append(("user", ae.hidden + 1))
    return item_blocks, user_blocks, tuple(paths)


def train_bags(cfg: Config, data: TrainData) -> dict[str, RatingBags]:
    """The rating task's train ratings by item ("item") and by user ("user"): the inputs of the
    AutoRec paths (none without them). Ids are id-vocabulary indices, the ids the towers read;
    unlabelled rows are left out."""
    if not (cfg.model.autorec.hidden or cfg.model.user_autorec.hidden):
        return {}
    task = next(t.name for t in cfg.tasks if t.kind == "rating")  # exactly one (config check)
    rows = data.split.train
    inter = data.dataset.interactions
    users = data.users.ids.numpy()[inter["user_idx"].to_numpy()[rows]]
    items = data.items.ids.numpy()[inter["item_idx"].to_numpy()[rows]]
    label = data.labels[task][rows]
    ok = ~np.isnan(label)
    users, items, label = users[ok], items[ok], label[ok]
    return {
        "item": RatingBags.from_pairs(items, users, label, data.item_spec.n_ids),
        "user": RatingBags.from_pairs(users, items, label, data.user_spec.n_ids),
    }
