"""RatingTask: global-mean bias, masked MSE, clipping, RMSE / MAE, built from train statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.unit.tasks.helpers import linear_weights, make_batch, tensor
from torch.testing import assert_close

from hydrarec.config import RatingTaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntitySpec
from hydrarec.tasks import RatingTask, TaskInputs, build_task


def _inputs(rep: torch.Tensor, batch) -> TaskInputs:
    b = rep.shape[0]
    return TaskInputs(
        user=torch.zeros(b, 2),
        item=torch.zeros(b, 2),
        items=torch.zeros(3, 2),
        batch=batch,
        rep=rep,
    )


def test_bias_starts_at_the_global_mean() -> None:
    task = RatingTask("rating", in_dim=2, column_scale=(1.0, 5.0), global_mean=3.5)
    assert task.head.bias.item() == 3.5
    with torch.no_grad():
        task.head.weight.zero_()
    out = task(_inputs(torch.randn(4, 2), make_batch(item_index=[0, 1, 2], item_pos=[0, 1, 2, 0])))
    assert_close(out, torch.full((4,), 3.5))  # (B,): a zero head predicts mu


def test_masked_mse_by_hand() -> None:
    # head: w = [1, -1], b = 3.5. rep rows [1, 0], [0, 1], [2, 2] -> outputs 4.5, 2.5, 3.5.
    # labels 5, 1, (NaN, unlabelled). squared errors 0.25, 2.25 -> mean over 2 rows = 1.25.
    task = RatingTask("rating", in_dim=2, column_scale=(1.0, 5.0), global_mean=3.5)
    linear_weights(task.head, [1.0, -1.0], 3.5)
    batch = make_batch(
        item_index=[0, 1, 2],
        item_pos=[0, 1, 2],
        labels={"rating": [5.0, 1.0, float("nan")]},
        label_mask={"rating": [True, True, False]},
    )
    out = task(_inputs(tensor([[1, 0], [0, 1], [2, 2]]), batch))
    assert_close(out, torch.tensor([4.5, 2.5, 3.5]))
    loss = task.loss(out, batch)
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    # d/db = mean over labelled rows of 2 (out - label) = (2 * -0.5 + 2 * 1.5) / 2 = 1.0
    assert task.head.bias.grad is not None
    assert task.head.bias.grad.item() == pytest.approx(1.0)
    assert torch.isfinite(task.head.weight.grad).all()  # the NaN label did not leak


def test_no_labelled_row_gives_zero_still_in_graph() -> None:
    task = RatingTask("rating", in_dim=2, column_scale=(1.0, 5.0), global_mean=3.0)
    batch = make_batch(
        item_index=[0],
        item_pos=[0, 0],
        labels={"rating": [4.0, 2.0]},
        label_mask={"rating": [False, False]},
    )
    loss = task.loss(task(_inputs(torch.ones(2, 2), batch)), batch)
    loss.backward()
    assert loss.item() == 0.0
    assert task.head.bias.grad is not None and task.head.bias.grad.item() == 0.0


def test_missing_mask_means_all_rows_and_missing_labels_name_the_task() -> None:
    task = RatingTask("stars", in_dim=1, column_scale=(1.0, 5.0), global_mean=3.0)
    batch = make_batch(item_index=[0], item_pos=[0, 0], labels={"stars": [4.0, 1.0]})
    # outputs 3, 3 -> (1 + 4) / 2 = 2.5
    assert task.loss(torch.tensor([3.0, 3.0]), batch).item() == pytest.approx(2.5)
    with pytest.raises(KeyError, match="stars"):
        task.loss(torch.tensor([3.0]), make_batch(item_index=[0], item_pos=[0]))


def test_predict_clips_to_the_scale() -> None:
    task = RatingTask("rating", in_dim=2, column_scale=(1.0, 5.0), global_mean=3.0)
    assert_close(task.predict(torch.tensor([6.0, 0.2, 3.0])), torch.tensor([5.0, 1.0, 3.0]))


def test_metrics_by_hand() -> None:
    # errors 2, 0, 1: RMSE = sqrt(5/3), MAE = 1
    task = RatingTask("rating", in_dim=2, column_scale=(1.0, 5.0), global_mean=3.0)
    m = task.metrics(np.array([3.0, 4.0, 5.0]), np.array([1.0, 4.0, 4.0]), np.array([0, 0, 1]))
    assert m == {"rmse": pytest.approx(math.sqrt(5 / 3)), "mae": pytest.approx(1.0)}


def _build(label_stats):
    spec = EntitySpec(n_ids=4)
    cfg = RatingTaskConfig(name="rating", kind="rating", column="stars")
    return build_task(
        cfg, rep_dim=3, dim=8, user_spec=spec, item_spec=spec, label_stats=label_stats, n_items=2
    )


def test_build_task_reads_scale_and_mean_of_the_column() -> None:
    task = _build({"stars": (1.0, 5.0, 3.53)})
    assert isinstance(task, RatingTask)
    assert task.scale == (1.0, 5.0)
    assert task.head.in_features == 3  # rep_dim
    assert task.head.bias.item() == pytest.approx(3.53)


def test_build_task_prefers_statistics_keyed_by_task_name() -> None:
    # labels (and their statistics) are keyed by task name upstream; the column is a fallback key
    task = _build({"rating": (0.0, 10.0, 7.0), "stars": (1.0, 5.0, 3.53)})
    assert isinstance(task, RatingTask)
    assert task.scale == (0.0, 10.0)
    assert task.head.bias.item() == pytest.approx(7.0)


def test_build_task_without_statistics_names_the_column() -> None:
    with pytest.raises(ConfigError, match=r"'stars'.*other"):
        _build({"other": (0.0, 1.0, 0.5)})
    with pytest.raises(ConfigError, match="none"):
        _build(None)


def test_mf_paths_by_hand() -> None:
    # head: zero weights, bias mu = 3; b_u = [1, 0].u = 1; b_i = [0, 2].i = 8;
    # dot = 0.5 * (1*3 + 2*4) = 5.5  ->  3 + 1 + 8 + 5.5 = 17.5
    task = RatingTask("r", in_dim=1, column_scale=(1.0, 5.0), global_mean=3.0, mf_dim=2)
    with torch.no_grad():
        task.head.weight.zero_()
        task.user_bias.weight.copy_(torch.tensor([[1.0, 0.0]]))
        task.item_bias.weight.copy_(torch.tensor([[0.0, 2.0]]))
        task.dot_scale.fill_(0.5)
    inputs = TaskInputs(
        user=torch.tensor([[1.0, 2.0]]), item=torch.tensor([[3.0, 4.0]]), rep=torch.zeros(1, 1)
    )
    assert_close(task(inputs), torch.tensor([17.5]))
    assert_close(task.predict(task(inputs)), torch.tensor([5.0]))  # clipped to the scale


def test_mf_paths_start_at_zero_and_get_gradients() -> None:
    task = RatingTask("r", in_dim=2, column_scale=(1.0, 5.0), global_mean=3.0, mf_dim=2)
    rep, user, item = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4, 2)
    plain = task.head(rep).squeeze(-1)
    out = task(TaskInputs(user=user, item=item, rep=rep))
    assert_close(out, plain)  # zero-initialised paths change nothing at start
    out.sum().backward()
    for name, p in task.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
