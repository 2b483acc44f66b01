"""Stage two's fast path (``recommend.rerank.predict_candidates``) against the model's plain
``predict_pairs`` on the materialised pairs, every task's prediction, for every architecture in
the registry and with a rating task that reads the pair vectors (``mf_paths``) or not."""

from __future__ import annotations

import pytest
import torch
from tests.integration.tiny import tiny_raw

from hydrarec.architectures import ARCHITECTURES
from hydrarec.config import config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.model.multitask import MultiTaskRecommender
from hydrarec.recommend.rerank import ItemSideCache, predict_candidates
from hydrarec.run.build import build_model
from hydrarec.run.data import make_train_data


@pytest.mark.parametrize("mf_paths", [False, True])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_candidates_are_scored_as_the_plain_pairs(arch: str, mf_paths: bool) -> None:
    raw = tiny_raw()
    raw["model"]["architecture"]["name"] = arch
    raw["tasks"][1]["mf_paths"] = mf_paths  # the rating task
    cfg = config_from_dict(raw)
    data = make_train_data(cfg, load_dataset(cfg.data))
    torch.manual_seed(0)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    assert isinstance(model, MultiTaskRecommender)
    model.eval()
    rating = dict(model.task_items())["rating"]
    assert rating.reads_vectors is mf_paths  # only then are the (B * n, D) vectors built
    assert not dict(model.task_items())["like"].reads_vectors
    items = model.encode_items(data.items.gather(torch.arange(len(data.items))))
    gen = torch.Generator().manual_seed(1)
    user = torch.randn(3, items.shape[1], generator=gen)
    candidates = torch.randint(0, len(items), (3, 5), generator=gen)
    cache = ItemSideCache(items)
    for _ in range(2):  # the second call reuses the cache's stacked weights
        got = predict_candidates(model, user, candidates, cache)
        want = model.predict_pairs(user.repeat_interleave(5, dim=0), items[candidates.flatten()])
        assert set(got) == set(want) == {"retrieval", "rating", "like"}
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5)
    # the retrieval score is the dot product, here carried by the first factored product
    dots = (user[:, None, :] * items[candidates]).sum(-1).flatten()
    torch.testing.assert_close(got["retrieval"], dots, rtol=1e-5, atol=1e-5)
