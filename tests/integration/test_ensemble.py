"""``model.ensemble``: K members trained together, scored as one model (``model/ensemble.py``)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from tests.integration.tiny import tiny_raw

from hydrarec.config import Config, config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.errors import ConfigError
from hydrarec.features.batch import Batch
from hydrarec.io.atomic import read_tensors
from hydrarec.io.progress import Progress
from hydrarec.model.ensemble import Ensemble
from hydrarec.model.multitask import MultiTaskRecommender
from hydrarec.recommend.queries import UserQuery
from hydrarec.recommend.recommender import Recommender
from hydrarec.recommend.rerank import ItemSideCache, predict_candidates
from hydrarec.run.build import build_model
from hydrarec.run.data import TrainData, make_train_data
from hydrarec.run.evaluate import evaluate
from hydrarec.run.rundir import load_run
from hydrarec.run.train import train
from hydrarec.serving import create_app
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.trainer import Trainer

QUIET = Progress(enabled=False)
DIM = 16  # tiny_raw's model.dim


def ensemble_config(k: int, **train_args: object) -> Config:
    raw = tiny_raw(**train_args)
    raw["model"]["ensemble"] = k
    # no dropout anywhere: the same batch gives the same gradients in and out of the ensemble
    raw["model"]["dropout"] = 0.0
    raw["model"]["sequence"]["dropout"] = 0.0
    raw["model"]["architecture"]["dropout"] = 0.0
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def data() -> TrainData:
    cfg = ensemble_config(2)
    return make_train_data(cfg, load_dataset(cfg.data))


def build(cfg: Config, data: TrainData) -> Ensemble:
    torch.manual_seed(0)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    assert isinstance(model, Ensemble)
    return model.eval()


def first_batch(data: TrainData) -> Batch:
    return next(iter(data.epoch_batches(1)))


def test_members_start_from_their_own_weights(data: TrainData) -> None:
    model = build(ensemble_config(3), data)
    a, b, c = (dict(m.named_parameters()) for m in model.members)
    name = "item_encoder.features.ids.weight"
    assert name in a
    assert not torch.equal(a[name], b[name]) and not torch.equal(b[name], c[name])
    assert model.clip_groups() == [list(m.parameters()) for m in model.members]


def test_vectors_are_the_members_side_by_side_and_scores_combine(data: TrainData) -> None:
    model = build(ensemble_config(2), data)
    m0, m1 = model.members
    items = data.items.gather(torch.arange(6))
    vectors = model.encode_items(items)
    assert vectors.shape == (6, 2 * DIM)
    torch.testing.assert_close(vectors[:, :DIM], m0.encode_items(items))
    torch.testing.assert_close(vectors[:, DIM:], m1.encode_items(items))

    torch.manual_seed(1)
    user, item = torch.randn(5, 2 * DIM), torch.randn(5, 2 * DIM)
    got = model.predict_pairs(user, item)
    p0 = m0.predict_pairs(user[:, :DIM], item[:, :DIM])
    p1 = m1.predict_pairs(user[:, DIM:], item[:, DIM:])
    # retrieval: the sum of the members' dot products, i.e. the dot product of the whole vectors
    torch.testing.assert_close(got["retrieval"], p0["retrieval"] + p1["retrieval"])
    torch.testing.assert_close(got["retrieval"], (user * item).sum(-1))
    # the pointwise tasks: the mean of the members' predictions (rating scale, probabilities)
    torch.testing.assert_close(got["rating"], (p0["rating"] + p1["rating"]) / 2)
    torch.testing.assert_close(got["like"], (p0["like"] + p1["like"]) / 2)
    assert not torch.allclose(p0["like"], p1["like"])  # the members do differ


def test_candidates_are_scored_as_the_plain_pairs(data: TrainData) -> None:
    model = build(ensemble_config(3), data)
    items = model.encode_items(data.items.gather(torch.arange(len(data.items))))
    torch.manual_seed(2)
    user = torch.randn(4, 3 * DIM)
    candidates = torch.randint(0, len(items), (4, 7))
    got = predict_candidates(model, user, candidates, ItemSideCache(items))
    flat_user = user.repeat_interleave(7, dim=0)
    want = model.predict_pairs(flat_user, items[candidates.reshape(-1)])
    assert set(got) == set(want) == {"retrieval", "rating", "like"}
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_losses_are_the_sum_of_the_members(data: TrainData) -> None:
    model = build(ensemble_config(2), data)
    batch = first_batch(data)
    got = model.losses(batch)
    parts = [m.losses(batch) for m in model.members]
    assert set(got) == {"retrieval", "rating", "like", "genres"}
    for name, loss in got.items():
        torch.testing.assert_close(loss, parts[0][name] + parts[1][name])


def fit_one_epoch(model: torch.nn.Module, cfg: Config, data: TrainData) -> None:
    objective = JointLoss(
        [t.name for t in cfg.tasks], cfg.loss, {t.name: t.weight for t in cfg.tasks}
    )
    trainer = Trainer(
        model.train(), objective, cfg.train, device=torch.device("cpu"), progress=QUIET
    )
    trainer.fit(data.epoch_batches, data.steps_per_epoch, None, "x", "max", epochs=1)


def test_a_member_trains_as_it_would_alone(data: TrainData) -> None:
    # a clip this small binds at every step: clipped over the whole ensemble, member 0 would
    # take other steps than alone (its share of the joint norm changes from step to step)
    cfg = ensemble_config(2, grad_clip=0.05, epochs=3)
    assert data.steps_per_epoch >= 3
    model = build(cfg, data)
    alone = copy.deepcopy(model.members[0])
    fit_one_epoch(model, cfg, data)
    fit_one_epoch(alone, cfg, data)
    trained = dict(model.members[0].named_parameters())
    moved = 0
    for name, p in alone.named_parameters():
        torch.testing.assert_close(trained[name], p, rtol=1e-5, atol=1e-6, msg=name)
    for name, p in copy.deepcopy(build(cfg, data).members[0]).named_parameters():
        moved += int(not torch.allclose(trained[name], p))
    assert moved > 10  # the epoch did train


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ensemble") / "run"
    train(ensemble_config(2, epochs=2), out, progress=QUIET)
    return out


def test_an_ensemble_run_loads_evaluates_and_recommends(ensemble_run: Path) -> None:
    state = read_tensors(ensemble_run / "model.safetensors")
    assert any(k.startswith("members.1.") for k in state)
    loaded = load_run(ensemble_run)
    assert isinstance(loaded.model, Ensemble) and len(loaded.model.members) == 2
    metrics = json.loads((ensemble_run / "metrics.json").read_text())
    assert evaluate(loaded, "test") == pytest.approx(metrics["test"])

    rec = Recommender(loaded)
    assert rec.item_vectors.shape == (len(loaded.item_ids), 2 * DIM)
    users = [loaded.user_ids.raw(np.array([u]))[0] for u in range(3)]
    out = rec.recommend([UserQuery(user_id=u) for u in users], k=5, predictions=True)
    assert (out.items >= 0).all()
    # stage two (each member's factored re-ranking) agrees with plain pair predictions
    again = rec.predict([users[0]] * 5, list(out.ids[0]))
    for name in ("rating", "like"):
        np.testing.assert_allclose(out.predictions[name][0], again[name], rtol=1e-4, atol=1e-5)


def test_one_member_is_the_plain_model_and_the_count_is_checked(data: TrainData) -> None:
    cfg = ensemble_config(1)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    assert isinstance(model, MultiTaskRecommender)  # runs saved before ensembles load as they were
    for bad in (0, 17):
        raw = tiny_raw()
        raw["model"]["ensemble"] = bad
        with pytest.raises(ConfigError, match="ensemble"):
            config_from_dict(raw)
    with pytest.raises(ValueError, match="at least 2"):
        Ensemble([model], member_dim=DIM)


def test_an_ensemble_run_is_served(ensemble_run: Path) -> None:
    rec = Recommender.load(ensemble_run)
    user = rec.run.user_ids.raw(np.array([0]))[0]
    ids, scores = rec.recommend([user], k=5)
    # one model process: the path `hydrarec serve` takes by default
    with TestClient(create_app(ensemble_run, model_processes=1, pin=False)) as client:
        assert client.get("/metadata").json()["model"]["ensemble"] == 2
        r = client.post("/recommend", json={"user_id": int(user), "k": 5})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
    assert [it["item_id"] for it in items] == ids[0].tolist()
    assert [it["score"] for it in items] == pytest.approx(scores[0].tolist(), rel=1e-5)


def test_members_scored_alone_and_together(ensemble_run: Path) -> None:
    loaded = load_run(ensemble_run)
    assert isinstance(loaded.model, Ensemble)
    whole = evaluate(loaded, "test")
    alone = [evaluate(dataclasses.replace(loaded, model=m), "test") for m in loaded.model.members]
    # reconstruction: the mean of the members' losses
    assert whole["genres/loss"] == pytest.approx(np.mean([a["genres/loss"] for a in alone]))
    # ranking and pointwise metrics come from the combined scores, not from one member
    for key in ("retrieval/mrr@20", "rating/rmse"):
        assert all(whole[key] != pytest.approx(a[key]) for a in alone), key
