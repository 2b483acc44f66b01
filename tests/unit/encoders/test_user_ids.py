"""``model.user_ids = false`` (issue 19): a user is their history and side features (SASRec)."""

from __future__ import annotations

import pytest
import torch
from tests.contracts.helpers import make_features, make_history, make_spec

from hydrarec.config import ModelConfig, SequenceConfig
from hydrarec.encoders.towers import UserTower
from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntitySpec

NO_FEATURES = EntitySpec(n_ids=20, categorical={}, n_numeric=0, numeric_names=(), multi_hot={})


def _cfg(user_ids: bool, kind: str = "transformer") -> ModelConfig:
    seq = SequenceConfig(kind=kind, max_len=5, layers=1, heads=2, dropout=0.0)  # type: ignore[arg-type]
    return ModelConfig(dim=8, embedding_dim=4, tower_hidden=[16], user_ids=user_ids, sequence=seq)


def test_without_ids_the_user_id_changes_nothing() -> None:
    torch.manual_seed(0)
    tower = UserTower(NO_FEATURES, _cfg(user_ids=False)).eval()
    assert not any("ids" in name for name, _ in tower.named_parameters())
    feats = make_features(NO_FEATURES, 4)
    seq, mask = make_history(4, 5, 8)
    other = make_features(NO_FEATURES, 4, seed=1)  # other user ids, the same histories
    assert not torch.equal(feats.ids, other.ids)
    torch.testing.assert_close(tower(feats, seq, mask), tower(other, seq, mask))


def test_with_ids_the_user_id_counts() -> None:
    torch.manual_seed(0)
    tower = UserTower(NO_FEATURES, _cfg(user_ids=True)).eval()
    seq, mask = make_history(4, 5, 8)
    a = tower(make_features(NO_FEATURES, 4), seq, mask)
    with torch.no_grad():
        tower.features.ids.weight.normal_()  # type: ignore[union-attr]
    assert not torch.allclose(a, tower(make_features(NO_FEATURES, 4), seq, mask))


def test_side_features_still_read_without_ids() -> None:
    tower = UserTower(make_spec(), _cfg(user_ids=False))
    assert tower.features is not None and tower.features.ids is None
    seq, mask = make_history(4, 5, 8)
    assert tower(make_features(make_spec(), 4), seq, mask).shape == (4, 8)


def test_nothing_to_read_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.user_ids = false leaves the user tower nothing"):
        UserTower(NO_FEATURES, _cfg(user_ids=False, kind="none"))
