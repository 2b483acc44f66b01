"""The search space of ``hydrarec tune`` (issue 24): its forms, what trials get from it, and
every bad input refused before any trial runs (nothing trains in this file)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from hydrarec.config import Config, config_from_dict, dump_config
from hydrarec.errors import ConfigError
from hydrarec.tuning import load_space, tune
from hydrarec.tuning.space import Choice, Range, check_space, config_with, suggest

SPACE_TOML = """
"model.dim" = [8, 16]
"train.lr" = { low = 1e-4, high = 1e-2, log = true }
"tasks.retrieval.weight" = { low = 0.5, high = 2.0, step = 0.5 }
"model.architecture.hidden" = [[16], [32, 16]]
[model.sequence]
layers = { low = 1, high = 3 }
"""


def base() -> Config:
    return config_from_dict(
        {
            "data": {"dataset": "synthetic", "split": {"kind": "leave_last_out"}},
            "model": {"dim": 8, "sequence": {"layers": 1, "heads": 2, "max_len": 5}},
            "train": {"epochs": 2},
            "eval": {"ks": [10]},
            "tasks": [{"name": "retrieval", "kind": "retrieval"}],
        }
    )


def raw_base() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(dump_config(base()))


def test_every_form_of_the_space_file(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(SPACE_TOML)
    space = load_space(path)
    by_key = {p.key: p for p in space.params}
    # quoted dotted keys and a nested table ([model.sequence] layers) name parameters alike
    assert space.keys == [
        "model.dim",
        "train.lr",
        "tasks.retrieval.weight",
        "model.architecture.hidden",
        "model.sequence.layers",
    ]
    assert by_key["model.dim"] == Choice("model.dim", (8, 16))
    assert by_key["train.lr"] == Range("train.lr", 1e-4, 1e-2, log=True)
    layers = by_key["model.sequence.layers"]
    assert isinstance(layers, Range) and layers.is_int
    weight = by_key["tasks.retrieval.weight"]
    assert isinstance(weight, Range) and not weight.is_int and weight.step == 0.5
    check_space(space, raw_base())  # every value is one the config accepts


def test_trials_get_values_inside_the_space_that_the_config_takes(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(SPACE_TOML)
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_hidden = set()
    for _ in range(30):
        values = suggest(study.ask(), space)
        assert values["model.dim"] in (8, 16)
        assert 1e-4 <= values["train.lr"] <= 1e-2
        assert isinstance(values["model.sequence.layers"], int)
        assert 1 <= values["model.sequence.layers"] <= 3
        assert values["tasks.retrieval.weight"] in (0.5, 1.0, 1.5, 2.0)
        seen_hidden.add(tuple(values["model.architecture.hidden"]))  # a list choice, as a list
        cfg = config_with(raw_base(), values)
        assert cfg.model.dim == values["model.dim"]
        assert cfg.model.sequence.layers == values["model.sequence.layers"]
        assert cfg.tasks[0].weight == values["tasks.retrieval.weight"]
        assert cfg.model.architecture.hidden == values["model.architecture.hidden"]
    assert seen_hidden == {(16,), (32, 16)}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("# nothing to search\n", "is empty"),
        ('"model.dimm" = [8, 16]\n', "unknown key 'dimm'"),
        ('"tasks.nope.weight" = [1.0, 2.0]\n', "no task named 'nope'"),
        # dropout must be < 1: the high bound is refused by the config's own validation
        ('"model.sequence.dropout" = { low = 0.0, high = 1.0 }\n', "model.sequence.dropout = 1.0"),
        ('"train.lr" = [0.01, -1.0]\n', "train.lr = -1.0 is refused"),
        ('"model.dim" = []\n', "has no choices"),
        ('"model.dim" = [8, 8]\n', "repeats a choice"),
        ('"train.lr" = { low = 0.1, high = 0.01 }\n', "must be below high"),
        ('"train.lr" = { low = 0.0, high = 0.1, log = true }\n', "needs low > 0"),
        ('"train.lr" = { low = 0.001, high = 0.1, scale = "log" }\n', "unknown range keys"),
        ('"train.lr" = { low = 0.001 }\n', "needs both low and high"),
        ('"train.lr" = 0.01\n', "expected a list of choices"),
        ('"train.seed" = [1, 2]\n', "cannot be searched"),
        ('"model" = [1, 2]\n', "model = 1 is refused"),
    ],
)
def test_bad_space_is_refused_before_any_trial(tmp_path: Path, space: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(space)
    out = tmp_path / "study"
    with pytest.raises(ConfigError, match=re.escape(message)):
        tune(base(), path, out=out, trials=1)
    assert not out.exists()  # no study, no trial directory


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent-folder/deeper/study.db",  # the file cannot be created
        "nosuchdb://user:secret@localhost/study",  # no such database dialect
    ],
)
def test_unreachable_storage_is_a_clear_error(tmp_path: Path, url: str) -> None:
    out = tmp_path / "study"
    with pytest.raises(ConfigError, match="cannot open the study storage") as caught:
        tune(base(), {"model.dim": [8, 16]}, out=out, trials=1, storage=url)
    assert "secret" not in str(caught.value)  # the password stays out of messages
    assert not (out / "trials").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"pruner": "sometimes"}, "pruner must be one of"),
        ({"keep": "best-two"}, "keep must be one of"),
        ({"trials": 0}, "trials must be at least 1"),
        ({"repeat": 0}, "repeat must be at least 1"),
        ({"timeout": -5.0}, "timeout must be a positive"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, option: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"trials": 1} | option
    with pytest.raises(ConfigError, match=message):
        tune(base(), {"model.dim": [8, 16]}, out=tmp_path / "study", **kwargs)


SPACES = sorted((Path(__file__).parents[3] / "configs" / "spaces").glob("*.toml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_shipped_space_fits_its_config(path: Path) -> None:
    """configs/spaces/NAME.toml searches configs/NAME.toml: every value of it is one the
    config takes (what ``tune`` checks before its first trial)."""
    import tomllib

    from hydrarec.config import load_config

    config = load_config(path.parents[1] / f"{path.stem}.toml")
    space = load_space(path)
    assert len(space.params) >= 5
    check_space(space, tomllib.loads(dump_config(config)))


def test_shipped_spaces_exist() -> None:
    assert [p.stem for p in SPACES] == ["beauty", "ml100k_loo"]


def test_hydrarec_tune_is_the_function_after_the_package_is_imported() -> None:
    """The package is ``hydrarec.tuning``: a subpackage named ``tune`` would rebind the
    attribute ``hydrarec.tune`` to itself when imported, and ``hydrarec.tune(...)`` would fail."""
    import hydrarec
    import hydrarec.tuning

    assert hydrarec.tune is hydrarec.tuning.tune
    assert callable(hydrarec.tune)
