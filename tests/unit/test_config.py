"""The typed config: shipped configs load, errors name the field, --set overrides."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hydrarec.config import (
    TASK_KINDS,
    Config,
    RatingTaskConfig,
    RetrievalTaskConfig,
    apply_override,
    config_from_dict,
    default_monitor,
    dump_config,
    load_config,
    monitor_of,
    validation_metrics,
)
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


@pytest.mark.parametrize(
    ("task", "message"),
    [
        # a field of another kind names the field, the kind and what that kind allows
        (
            {"name": "r", "kind": "rating", "column": "rating", "temperature": 0.05},
            "tasks.0.temperature: unknown key for a task of kind 'rating' (allowed: name, kind, "
            "weight, column, mf_paths, autorec_weight, user_autorec_weight)",
        ),
        (
            {"name": "r", "kind": "retrieval", "mf_paths": True},
            "tasks.0.mf_paths: unknown key for a task of kind 'retrieval' (allowed: name, kind, "
            "weight, negatives, sampler, alpha, logq, full_softmax, temperature, "
            "gather_negatives, exclude_own_items)",
        ),
        (
            {"name": "r", "kind": "retrieval", "column": "rating"},
            "tasks.0.column: unknown key for a task of kind 'retrieval'",
        ),
        (
            {"name": "like", "kind": "binary", "rule": "rating >= 4", "entity": "user"},
            "tasks.0.entity: unknown key for a task of kind 'binary'",
        ),
        (
            {"name": "g", "kind": "reconstruction", "feature": "genres", "rule": "x > 1"},
            "tasks.0.rule: unknown key for a task of kind 'reconstruction'",
        ),
        # the kind itself: unknown or missing
        (
            {"name": "r", "kind": "ranking"},
            "tasks.0.kind: unknown kind 'ranking' (allowed: 'retrieval', 'rating', 'binary', "
            "'reconstruction')",
        ),
        (
            {"name": "r", "column": "rating"},
            "tasks.0.kind: missing (allowed: 'retrieval', 'rating', 'binary', 'reconstruction')",
        ),
        # a kind's own field keeps its own checks, located without the kind
        ({"name": "r", "kind": "retrieval", "temperature": 0}, "tasks.0.temperature: Input"),
        ({"name": "r", "kind": "rating"}, "task 'r': kind 'rating' needs 'column'"),
        ({"name": "l", "kind": "binary"}, "task 'l': kind 'binary' needs 'column' or 'rule'"),
        ({"name": "g", "kind": "reconstruction"}, "kind 'reconstruction' needs 'feature'"),
    ],
)
def test_a_task_entry_takes_the_fields_of_its_kind_only(task: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"tasks": [task]})
    assert message in str(caught.value)


def test_set_reaches_the_fields_of_the_tasks_kind(base_toml: Path) -> None:
    cfg = load_config(base_toml, ["tasks.retrieval.temperature=0.05", "tasks.rating.mf_paths=true"])
    assert isinstance(cfg.tasks[0], RetrievalTaskConfig) and cfg.tasks[0].temperature == 0.05
    assert isinstance(cfg.tasks[1], RatingTaskConfig) and cfg.tasks[1].mf_paths
    with pytest.raises(ConfigError, match=r"tasks\.1\.temperature: unknown key for a task of kind"):
        load_config(base_toml, ["tasks.rating.temperature=0.05"])


def test_a_run_written_with_every_kinds_fields_still_loads() -> None:
    """Before one class a kind, ``dump_config`` wrote every field of every kind into each task
    entry: runs written then load as their own kinds' entries."""
    flat = {"weight": 1.0, "mf_paths": False, "autorec_weight": 0.5,
            "user_autorec_weight": 0.25, "negatives": 0, "sampler": "popularity", "alpha": 0.75,
            "logq": True, "temperature": 0.1, "gather_negatives": False, "entity": "item",
            "loss": "bce"}  # fmt: skip
    old = tomllib.loads(BASE_TOML)
    for task in old["tasks"]:
        task.update(flat)
    assert config_from_dict(old) == config_from_dict(tomllib.loads(BASE_TOML))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


# -- values that used to fail late (issue 21, defect 6) -------------------------------------------
BASE_TOML = """
[data.split]
kind = "leave_last_out"

[[tasks]]
name = "retrieval"
kind = "retrieval"

[[tasks]]
name = "rating"
kind = "rating"
column = "rating"

[[tasks]]
name = "like"
kind = "binary"
rule = "rating >= 4"
"""


@pytest.fixture
def base_toml(tmp_path: Path) -> Path:
    path = tmp_path / "base.toml"
    path.write_text(BASE_TOML)
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.ks=[0]", "eval.ks.0: Input should be greater than 0"),
        ("eval.ks=[-5]", "eval.ks.0: Input should be greater than 0"),
        ("eval.ks=[]", "eval.ks: List should have at least 1 item"),
        ("train.monitor='retrieval/ndcg@5'", "train.monitor = 'retrieval/ndcg@5' is not"),
        ("train.monitor='clik/auc'", "train.monitor = 'clik/auc' is not"),
        ("train.monitor='ndcg@10'", "train.monitor = 'ndcg@10' is not"),
        ("train.monitor='like/gauc'", "train.monitor = 'like/gauc' is not"),  # one per user
        ("eval.ks=[20]", "unset, so it defaults to 'retrieval/ndcg@10', which eval.ks = [20]"),
        ("train.lr=inf", "train.lr: Input should be a finite number"),
        ("train.lr=nan", "train.lr: Input should be a finite number"),
        ("tasks.rating.weight=inf", "tasks.1.weight: Input should be a finite number"),
        ("model.tower_hidden=[-8]", "model.tower_hidden.0: Input should be greater than 0"),
        ("model.architecture.hidden=[0]", "model.architecture.hidden.0: Input should be greater"),
        ("model.architecture.tower=[16, 0]", "model.architecture.tower.1: Input should be greater"),
        ("model.sequence.max_len=10000000", "model.sequence.max_len: Input should be less than or"),
        ("recommend.blend={clik = 1.0}", "recommend.blend: 'clik' is not a rating or binary task"),
        ("recommend.blend={retrieval = 1.0}", "'retrieval' is not a rating or binary task"),
        ("recommend.blend={like = nan}", "recommend.blend.like: Input should be a finite number"),
    ],
)
def test_values_that_would_fail_late_are_refused_at_load(
    base_toml: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(base_toml, [override])
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "override",
    [
        "train.monitor='retrieval/mrr@20'",
        "train.monitor='like/logloss'",
        "eval.ks=[5]",  # ... with a monitor that exists
        "model.sequence.max_len=4096",
        "recommend.blend={like = 1.0, rating = 0.5}",
    ],
)
def test_their_valid_neighbours_load(base_toml: Path, override: str) -> None:
    overrides = [override] + (["train.monitor='rating/rmse'"] if "ks" in override else [])
    load_config(base_toml, overrides)


def test_gauc_can_be_monitored_where_users_have_several_validation_interactions(
    base_toml: Path,
) -> None:
    cfg = load_config(base_toml, ["data.split.kind=random", "train.monitor='like/gauc'"])
    assert cfg.train.monitor == "like/gauc"


def test_the_metric_table_names_what_the_tasks_compute() -> None:
    """Each kind's ``metrics`` against the code that computes them (the tiny run's metrics.json
    checks the names end to end: tests/integration/test_validation_metrics.py)."""
    from hydrarec.tasks.binary import BinaryTask
    from hydrarec.tasks.metrics import ranking_metrics
    from hydrarec.tasks.rating import RatingTask

    pred, label, user = np.array([0.2, 0.7, 0.4]), np.array([0.0, 1.0, 1.0]), np.array([1, 1, 2])
    binary = tuple(BinaryTask("like", 2).metrics(pred, label, user))
    assert binary == tuple(TASK_KINDS["binary"].metrics)
    rating = RatingTask("rating", 2, (1.0, 5.0), 3.0)
    assert tuple(rating.metrics(pred, label, user)) == tuple(TASK_KINDS["rating"].metrics)
    ranking = tuple(ranking_metrics(np.array([0, 3]), [7]))
    retrieval = [m for m in TASK_KINDS["retrieval"].metrics if m != "recall@{k}"]  # cold only
    assert ranking == tuple(m.format(k=7) for m in retrieval)
    raw = tomllib.loads(BASE_TOML)
    for first in range(len(raw["tasks"])):  # the default monitor of each kind is produced
        raw["tasks"].insert(0, raw["tasks"].pop(first))
        cfg = config_from_dict(raw)
        assert default_monitor(cfg) in validation_metrics(cfg)


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        (None, ("retrieval/ndcg@10", "max")),  # the first task's headline metric
        ("rating/rmse", ("rating/rmse", "min")),
        ("rating/mae", ("rating/mae", "min")),
        ("like/auc", ("like/auc", "max")),
        ("like/logloss", ("like/logloss", "min")),
        ("retrieval/hr@20", ("retrieval/hr@20", "max")),
        ("retrieval/mrr@10", ("retrieval/mrr@10", "max")),
    ],
)
def test_the_monitor_and_its_direction_come_from_the_task_kind(
    base_toml: Path, monitor: str | None, expected: tuple[str, str]
) -> None:
    overrides = [] if monitor is None else [f"train.monitor='{monitor}'"]
    assert monitor_of(load_config(base_toml, overrides)) == expected


# -- random values (hypothesis): a ConfigError or a config, never another exception ---------------
def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every field of ``model``, sections and leaves (tasks by index)."""
    paths = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths.extend(field_paths(sub, path + "."))
    paths.extend(f"tasks.0.{name}" for kind in TASK_KINDS.values() for name in kind.model_fields)
    return paths


PATHS = sorted(set(field_paths(Config)))
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["retrieval/ndcg@10", "rating", "mmoe", "transformer", "inf"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def assign(raw: dict, path: str, value: object) -> None:
    *head, last = path.split(".")
    node: Any = raw
    for part in head:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(PATHS),
    value=VALUES,
    override=st.text(max_size=40),
    data=st.data(),
)
def test_random_values_are_a_config_error_or_a_config(
    path: str, value: object, override: str, data: st.DataObject
) -> None:
    """A random value at a random place of a valid config, then a random ``--set`` of that place,
    of a place inside it (a section replaced by a value in the file) or of random text."""
    inside = [p for p in PATHS if p.startswith(path + ".")] or PATHS
    other = data.draw(st.sampled_from(inside))
    raw = tomllib.loads(BASE_TOML)
    assign(raw, path, value)
    with contextlib.suppress(ConfigError):
        config_from_dict(raw)
    for assignment in (f"{path}={override}", f"{other}={override}", override):  # --set
        again = tomllib.loads(BASE_TOML)
        assign(again, path, value)
        with contextlib.suppress(ConfigError):
            apply_override(again, assignment)
            config_from_dict(again)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), value=VALUES.filter(lambda v: v is not None))
def test_every_valid_config_round_trips_through_its_toml(path: str, value: object) -> None:
    """``dump_config`` then ``load_config`` gives the same config, whatever keys and strings it
    holds (quotes, newlines, unicode in dict keys and values). None is left out: TOML has no null,
    so ``dump_config`` drops it and a None that is not the field's default (only
    ``data.tabular.timestamp``, settable from Python alone) loads back as the default."""
    raw = tomllib.loads(BASE_TOML)
    assign(raw, path, value)
    try:
        cfg = config_from_dict(raw)
    except ConfigError:
        return
    assert config_from_dict(tomllib.loads(dump_config(cfg))) == cfg


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=200))
def test_random_files_are_a_config_error_or_a_config(tmp_path_factory: Any, content: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "random.toml"
    path.write_bytes(content)
    with contextlib.suppress(ConfigError):
        load_config(path)


def test_beauty_multi_task_config_is_the_shipped_one_plus_its_task() -> None:
    """The BEAUTY-LOO multi-task row measures the shipped config with one task more: the two
    files must not drift apart (issue 19: "report the single-task row beside the multi-task")."""
    root = Path(__file__).resolve().parents[2]
    shipped = tomllib.loads((root / "configs/beauty.toml").read_text())
    multi = tomllib.loads((root / "benchmarks/configs/beauty_attributes.toml").read_text())
    extra = multi["tasks"].pop()
    assert extra["kind"] == "reconstruction" and extra["feature"] == "attributes"
    assert multi == shipped


def test_the_registries_pair_each_name_of_the_config_with_its_class() -> None:
    """The names are written once (config.py); each registry pairs them with its classes."""
    from hydrarec.architectures import AITM, ARCHITECTURES, PLE, MMoE, SharedBottom, SingleTask
    from hydrarec.encoders.hstu import HSTUSequenceEncoder
    from hydrarec.encoders.sequence import (
        RecurrentSequenceEncoder,
        TransformerSequenceEncoder,
        sequence_encoders,
    )
    from hydrarec.tasks import TASKS

    assert {
        "single": SingleTask,
        "shared_bottom": SharedBottom,
        "mmoe": MMoE,
        "ple": PLE,
        "aitm": AITM,
    } == ARCHITECTURES
    assert sequence_encoders() == {
        "transformer": TransformerSequenceEncoder,
        "gru": RecurrentSequenceEncoder,
        "lstm": RecurrentSequenceEncoder,
        "hstu": HSTUSequenceEncoder,
    }
    assert list(TASKS) == list(TASK_KINDS)
    assert all(TASKS[kind].config is TASK_KINDS[kind] for kind in TASKS)
