"""BinaryTask: logits out, masked BCE-with-logits, sigmoid in predict, AUC / GAUC / log loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.unit.tasks.helpers import linear_weights, make_batch, tensor
from torch.testing import assert_close

from hydrarec.config import BinaryTaskConfig
from hydrarec.features.batch import EntitySpec
from hydrarec.tasks import BinaryTask, TaskInputs, build_task


def _inputs(rep: torch.Tensor, batch) -> TaskInputs:
    b = rep.shape[0]
    z = torch.zeros(b, 2)
    return TaskInputs(user=z, item=z, items=torch.zeros(1, 2), batch=batch, rep=rep)


def test_logits_and_masked_bce_by_hand() -> None:
    # head w = [1, 0], b = 0; rep rows [0, 0], [ln 3, 0], [5, 0] -> logits 0, ln 3, 5.
    # labels 1, 0, (1 unlabelled).
    # row 0: -ln sigmoid(0) = ln 2;  row 1: -ln(1 - sigmoid(ln 3)) = -ln(1 - 3/4) = ln 4.
    # mean over the two labelled rows = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2 = 1.039721
    task = BinaryTask("like", in_dim=2)
    linear_weights(task.head, [1.0, 0.0], 0.0)
    batch = make_batch(
        item_index=[0],
        item_pos=[0, 0, 0],
        labels={"like": [1.0, 0.0, 1.0]},
        label_mask={"like": [True, True, False]},
    )
    out = task(_inputs(tensor([[0, 0], [math.log(3), 0], [5, 0]]), batch))
    assert_close(out, torch.tensor([0.0, math.log(3), 5.0]))  # logits, not probabilities
    loss = task.loss(out, batch)
    assert loss.item() == pytest.approx(1.5 * math.log(2), rel=1e-6)
    loss.backward()
    # d/db = mean over labelled rows of (sigmoid - label) = ((0.5 - 1) + (0.75 - 0)) / 2 = 0.125
    assert task.head.bias.grad is not None
    assert task.head.bias.grad.item() == pytest.approx(0.125, rel=1e-6)


def test_bce_is_stable_on_large_logits() -> None:
    # logit 100 with label 0: BCE = 100 exactly (a sigmoid + BCELoss would clamp at log(1e-12))
    task = BinaryTask("like", in_dim=1)
    batch = make_batch(item_index=[0], item_pos=[0], labels={"like": [0.0]})
    assert task.loss(torch.tensor([100.0]), batch).item() == pytest.approx(100.0)


def test_no_labelled_row_gives_zero_still_in_graph() -> None:
    task = BinaryTask("like", in_dim=2)
    batch = make_batch(
        item_index=[0], item_pos=[0], labels={"like": [1.0]}, label_mask={"like": [False]}
    )
    loss = task.loss(task(_inputs(torch.ones(1, 2), batch)), batch)
    loss.backward()
    assert loss.item() == 0.0
    assert task.head.weight.grad is not None and torch.all(task.head.weight.grad == 0)


def test_predict_is_the_sigmoid() -> None:
    task = BinaryTask("like", in_dim=2)
    assert_close(task.predict(torch.tensor([0.0, math.log(3)])), torch.tensor([0.5, 0.75]))


def test_metrics_by_hand() -> None:
    # rows (score, label, user): (.9,1,7) (.1,0,7) (.5,0,7) (.2,1,8) (.6,0,8) (.3,1,9)
    # AUC: positives .9, .2, .3 vs negatives .1, .5, .6: .9 wins 3, .2 wins 1, .3 wins 1 -> 5/9.
    # GAUC: user 7 AUC 1 (3 rows), user 8 AUC 0 (2 rows), user 9 one class (left out)
    #   -> (3 * 1 + 2 * 0) / 5 = 0.6.
    # log loss: -(ln .9 + ln .9 + ln .5 + ln .2 + ln .4 + ln .3) / 6 = 0.772262
    task = BinaryTask("like", in_dim=2)
    pred = np.array([0.9, 0.1, 0.5, 0.2, 0.6, 0.3])
    label = np.array([1, 0, 0, 1, 0, 1])
    user = np.array([7, 7, 7, 8, 8, 9])
    m = task.metrics(pred, label, user)
    logloss = -sum(math.log(p) for p in [0.9, 0.9, 0.5, 0.2, 0.4, 0.3]) / 6
    assert logloss == pytest.approx(0.772262, abs=1e-6)
    assert m == {
        "auc": pytest.approx(5 / 9),
        "gauc": pytest.approx(0.6),
        "logloss": pytest.approx(logloss),
    }


def test_build_task_uses_the_representation_width() -> None:
    spec = EntitySpec(n_ids=4)
    cfg = BinaryTaskConfig(name="like", kind="binary", rule="rating >= 4")
    task = build_task(
        cfg, rep_dim=6, dim=8, user_spec=spec, item_spec=spec, label_stats=None, n_items=2
    )
    assert isinstance(task, BinaryTask)
    assert task.name == "like" and task.head.in_features == 6 and task.uses_tower


def test_forward_without_a_tower_representation_is_an_error() -> None:
    task = BinaryTask("like", in_dim=2)
    z = torch.zeros(1, 2)
    inputs = TaskInputs(user=z, item=z, items=z, batch=make_batch(item_index=[0], item_pos=[0]))
    with pytest.raises(ValueError, match="'like'"):
        task(inputs)
