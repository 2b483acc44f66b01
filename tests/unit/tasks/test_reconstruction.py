"""ReconstructionTask: targets built from token ids, losses by hand, config errors."""

from __future__ import annotations

import math

import pytest
import torch
from tests.unit.tasks.helpers import make_batch, tensor
from torch.testing import assert_close

from hydrarec.config import ReconstructionTaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntityFeatures, EntitySpec
from hydrarec.tasks import ReconstructionTask, TaskInputs, build_task

ITEM_SPEC = EntitySpec(n_ids=4, categorical={"color": 4}, n_numeric=2, multi_hot={"genres": 5})
USER_SPEC = EntitySpec(n_ids=5, categorical={"age": 4})


def _batch():
    # two distinct items; interactions at item rows 1, 0, 1
    items = EntityFeatures(
        ids=torch.tensor([2, 3]),
        categorical={"color": torch.tensor([3, 2])},
        numeric=tensor([[1, 2], [3, 4]]),
        # item row 0: tokens {2, 3} + padding; item row 1: OOV (1), token 4 twice
        multi_hot={"genres": torch.tensor([[2, 3, 0], [1, 4, 4]])},
    )
    users = EntityFeatures(
        ids=torch.tensor([2, 3, 4]), categorical={"age": torch.tensor([2, 3, 1])}
    )
    return make_batch(item_index=[0, 1], item_pos=[1, 0, 1], users=users, items=items)


def test_multi_hot_target_ignores_padding_and_oov() -> None:
    task = ReconstructionTask("genres", "item", "genres", ITEM_SPEC, in_dim=4, loss="bce")
    expected = tensor([[0, 0, 0, 0, 1], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]])  # (B=3, V=5)
    assert_close(task.target(_batch()), expected)


def test_multi_hot_bce_by_hand() -> None:
    # Output: columns 0, 1 = 50 (reserved: left out of the loss), columns 2, 3 = 0, column 4 = ln 3.
    # Over the 3 x 3 counted elements: six with logit 0 -> ln 2 each; column 4 (sigmoid 3/4) with
    # targets 1, 0, 1 -> ln(4/3), ln 4, ln(4/3).
    # mean = (6 ln 2 + 2 ln(4/3) + ln 4) / 9 = (12 ln 2 - 2 ln 3) / 9 = 0.680060
    task = ReconstructionTask("genres", "item", "genres", ITEM_SPEC, in_dim=4, loss="bce")
    output = torch.zeros(3, 5)
    output[:, :2] = 50.0
    output[:, 4] = math.log(3)
    expected = (12 * math.log(2) - 2 * math.log(3)) / 9
    assert expected == pytest.approx(0.680060, abs=1e-6)
    assert task.loss(output, _batch()).item() == pytest.approx(expected, rel=1e-6)
    assert_close(task.predict(torch.tensor([[0.0, math.log(3)]])), torch.tensor([[0.5, 0.75]]))


def test_categorical_user_one_hot_mse_by_hand() -> None:
    # ages 2, 3, 1 (OOV) -> one-hot rows [0,0,1,0], [0,0,0,1], [0,0,0,0].
    # Zero output, MSE over columns 2..3 (6 elements, two ones) = 2/6 = 1/3.
    task = ReconstructionTask("age", "user", "age", USER_SPEC, in_dim=4, loss="mse")
    assert_close(task.target(_batch()), tensor([[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]))
    assert task.loss(torch.zeros(3, 4), _batch()).item() == pytest.approx(1 / 3)
    assert_close(task.predict(torch.tensor([[2.0]])), torch.tensor([[2.0]]))  # mse: identity


def test_numeric_mse_by_hand() -> None:
    # item rows 1, 0, 1 -> targets [3, 4], [1, 2], [3, 4]; zero output:
    # (9 + 16 + 1 + 4 + 9 + 16) / 6 = 55 / 6
    task = ReconstructionTask("num", "item", "numeric", ITEM_SPEC, in_dim=4, loss="mse")
    assert_close(task.target(_batch()), tensor([[3, 4], [1, 2], [3, 4]]))
    assert task.loss(torch.zeros(3, 2), _batch()).item() == pytest.approx(55 / 6)


def test_decoder_reads_the_chosen_entity() -> None:
    torch.manual_seed(0)
    task = ReconstructionTask("genres", "item", "genres", ITEM_SPEC, in_dim=4, loss="bce")
    item = torch.randn(3, 4)
    a = TaskInputs(user=torch.zeros(3, 4), item=item, items=torch.zeros(2, 4), batch=_batch())
    b = TaskInputs(user=torch.ones(3, 4), item=item, items=torch.zeros(2, 4), batch=_batch())
    c = TaskInputs(user=torch.zeros(3, 4), item=item + 1, items=torch.zeros(2, 4), batch=_batch())
    assert task(a).shape == (3, 5)
    assert_close(task(a), task(b))  # the user vector is not read
    assert not torch.allclose(task(a), task(c))  # the item vector is
    assert task.uses_tower is False


def test_numeric_with_bce_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mse"):
        ReconstructionTask("num", "item", "numeric", ITEM_SPEC, in_dim=4, loss="bce")


def _build(entity: str, feature: str):
    cfg = ReconstructionTaskConfig(
        name="rec", kind="reconstruction", entity=entity, feature=feature
    )
    return build_task(
        cfg, rep_dim=3, dim=8, user_spec=USER_SPEC, item_spec=ITEM_SPEC, label_stats=None, n_items=2
    )


def test_build_task_picks_the_entity_spec_and_dim() -> None:
    task = _build("item", "genres")
    assert isinstance(task, ReconstructionTask)
    assert task.width == 5 and task.decoder[0].in_features == 8  # dim, not rep_dim
    assert _build("user", "age").width == 4


def test_build_task_unknown_feature_names_available_ones() -> None:
    with pytest.raises(ConfigError, match="color, genres, numeric"):
        _build("item", "year")
    with pytest.raises(ConfigError, match="available user features: age"):
        _build("user", "genres")
