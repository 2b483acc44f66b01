"""The typed config: shipped configs load, errors name the field, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from hydrarec.config import apply_override, config_from_dict, dump_config, load_config
from hydrarec.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


def test_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    assert {
        "ml100k_single_rating",
        "ml100k_single_retrieval",
        "ml100k_shared_bottom",
        "ml100k_mmoe",
        "ml100k_ple",
        "ml100k_u1_rating",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_round_trips(path: Path) -> None:
    cfg = load_config(path)
    again = config_from_dict(tomllib.loads(dump_config(cfg)))
    assert again == cfg


def base() -> dict:
    return {"tasks": [{"name": "rating", "kind": "rating", "column": "rating"}]}


def test_set_overrides_nested_and_task_keys() -> None:
    raw = base()
    apply_override(raw, "train.lr=0.01")
    apply_override(raw, "model.architecture.name=ple")
    apply_override(raw, "tasks.rating.weight=2")
    cfg = config_from_dict(raw)
    assert cfg.train.lr == 0.01
    assert cfg.model.architecture.name == "ple"
    assert cfg.tasks[0].weight == 2.0


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.lrr=1", "unknown key 'lrr'"),
        ("tasks.like.weight=1", "no task named 'like'"),
        ("nosuch.key=1", "unknown key 'nosuch'"),
        ("train.lr", "expected section.key=value"),
        ("train.lr.x=1", "is a value, not a section"),
    ],
)
def test_set_unknown_key_is_an_error(assignment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_override(base(), assignment)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"train": {"lr": -1}}, "train.lr"),
        ({"model": {"architecture": {"name": "moe"}}}, "model.architecture.name"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"typo": 1}}, "train.typo: unknown key"),
    ],
)
def test_invalid_values_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        config_from_dict(base() | raw)


def test_task_needs_its_column_and_names_are_unique() -> None:
    with pytest.raises(ConfigError, match="needs 'column'"):
        config_from_dict({"tasks": [{"name": "r", "kind": "rating"}]})
    with pytest.raises(ConfigError, match="unique"):
        config_from_dict({"tasks": base()["tasks"] * 2})
    with pytest.raises(ConfigError, match="at least one"):
        config_from_dict({"tasks": []})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
