"""Id-dropout reaches every task that reads item vectors (issue 20).

The question of issue 20 was whether the rating / like heads see a cold item as the retrieval
tower does. They do: the item tower drops ids before any task reads its vectors, so with
``id_dropout = 1`` a training pass equals an evaluation pass over the same batch whose item ids
are all out of vocabulary (the path of a held-out or added item), for every task's output.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from tests.integration.tiny import tiny_raw

from hydrarec.config import config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.encoders.embedding import OOV, PAD
from hydrarec.run.build import build_model
from hydrarec.run.data import make_train_data


def test_every_task_sees_dropped_ids_as_out_of_vocabulary() -> None:
    raw = tiny_raw()
    raw["model"] |= {"dropout": 0.0, "text": {"id_dropout": 1.0}}  # no other randomness
    raw["model"]["sequence"]["dropout"] = 0.0
    raw["model"]["architecture"]["dropout"] = 0.0
    cfg = config_from_dict(raw)
    data = make_train_data(cfg, load_dataset(cfg.data))
    torch.manual_seed(0)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    batch = next(iter(data.epoch_batches(0)))
    with torch.no_grad():
        dropped = model.train()(batch)
        ids = batch.items.ids
        oov = replace(batch, items=replace(batch.items, ids=ids.masked_fill(ids != PAD, OOV)))
        cold = model.eval()(oov)
        warm = model(batch)
    assert set(dropped) == {"retrieval", "rating", "like", "genres"}
    for task in dropped:
        torch.testing.assert_close(dropped[task], cold[task])
    assert not torch.allclose(warm["like"], cold["like"])  # the ids do matter when kept
