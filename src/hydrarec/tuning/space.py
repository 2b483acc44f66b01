"""The search space of ``hydrarec tune`` (issue 24): TOML keyed by the dotted ``--set`` names.

    "model.dim" = [32, 64, 128]                               # categorical
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }      # float on a log scale
    "model.sequence.layers" = { low = 1, high = 4 }           # int: both bounds are ints
    "train.batch_size" = { low = 128, high = 512, step = 128 }

Unquoted dotted keys (``model.dim = [...]``) read as nested TOML tables and mean the same.
The whole space is checked against the config before any trial runs: every key must be one
``--set`` accepts, and every choice and both bounds of every range must pass the config's own
validation, so that no trial fails on a value the config refuses by itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import tomllib

from hydrarec.config import Config, apply_override, config_from_dict
from hydrarec.errors import ConfigError

# keys the tuner sets itself in every trial, so a space may not search them
TUNER_OWNS = {
    "train.seed": "each trial gets its own seed (--repeat averages several)",
    "train.monitor": "it is the study's objective: one metric for every trial",
    "train.refit": "trials are scored on valid; a refit only changes the test model",
}
RANGE_KEYS = {"low", "high", "log", "step"}
Scalar = bool | int | float | str


@dataclass(frozen=True)
class Choice:
    """A categorical parameter: one of ``choices`` (scalars, or lists such as layer widths)."""

    key: str
    choices: tuple[Any, ...]

    @property
    def scalar(self) -> bool:
        """Optuna stores scalar choices as they are; lists travel as their JSON text."""
        return all(isinstance(c, Scalar) for c in self.choices)


@dataclass(frozen=True)
class Range:
    """A numeric parameter in ``[low, high]``: int when both bounds (and step) are ints."""

    key: str
    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))


Param = Choice | Range


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def describe(self) -> dict[str, Any]:
        """JSON-able form, stored with the study so a resume with another space is caught."""
        return {
            p.key: list(p.choices)
            if isinstance(p, Choice)
            else {"low": p.low, "high": p.high, "log": p.log, "step": p.step}
            for p in self.params
        }


def load_space(source: str | Path | Mapping[str, Any]) -> Space:
    """A space from a TOML file or an already-parsed mapping; ``ConfigError`` naming the key
    when a value is neither a list of choices nor a ``{low, high}`` range."""
    if isinstance(source, Mapping):
        raw, where = dict(source), "<dict>"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"search space file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        where = str(path)
    params = tuple(_param(key, value) for key, value in _flatten(raw, ""))
    if not params:
        raise ConfigError(f"search space {where} is empty: give at least one parameter")
    return Space(params)


def _flatten(raw: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """``{"model": {"dim": [..]}}`` -> ``[("model.dim", [..])]``; a range table is a leaf."""
    out: list[tuple[str, Any]] = []
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not (RANGE_KEYS & set(value)):
            if not value:
                raise ConfigError(f"search space: {name} is an empty table")
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _param(key: str, value: Any) -> Param:
    if key in TUNER_OWNS:
        raise ConfigError(f"search space: {key} cannot be searched: {TUNER_OWNS[key]}")
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"search space: {key} has no choices")
        if len({json.dumps(v) for v in value}) < len(value):
            raise ConfigError(f"search space: {key} repeats a choice: {value}")
        return Choice(key, tuple(value))
    if isinstance(value, Mapping):
        return _range(key, value)
    raise ConfigError(
        f"search space: {key} = {value!r}: expected a list of choices or a table "
        "{low, high[, log][, step]}"
    )


def _range(key: str, spec: Mapping[str, Any]) -> Range:
    unknown = set(spec) - RANGE_KEYS
    if unknown:
        raise ConfigError(f"search space: {key}: unknown range keys {sorted(unknown)}")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"search space: {key}: a range needs both low and high")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    for name, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"search space: {key}: {name} must be a number, not {v!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"search space: {key}: log must be true or false")
    if not low < high:
        raise ConfigError(f"search space: {key}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"search space: {key}: a log range needs low > 0, not {low}")
    if step is not None and (log or step <= 0):
        raise ConfigError(f"search space: {key}: step must be > 0 and not with log = true")
    return Range(key, low, high, log, step)


def check_space(space: Space, raw: dict[str, Any]) -> None:
    """Every candidate value of ``space`` (each choice, each range's low and high) applied
    alone to the resolved config ``raw`` must pass the config's validation: a
    ``ConfigError`` naming the key and the value otherwise, before any trial runs."""
    for param in space.params:
        values = param.choices if isinstance(param, Choice) else (param.low, param.high)
        for value in values:
            try:
                config_with(raw, {param.key: value})
            except ConfigError as e:
                raise ConfigError(
                    f"search space: {param.key} = {json.dumps(value)} is refused by the config: {e}"
                ) from None


def config_with(raw: dict[str, Any], values: Mapping[str, Any]) -> Config:
    """The config ``raw`` with each ``key -> value`` applied as ``--set key=value`` would."""
    updated = copy.deepcopy(raw)
    for key, value in values.items():
        apply_override(updated, f"{key}={json.dumps(value)}")
    return config_from_dict(updated, "the search space")


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """One trial's values, asked of Optuna's sampler."""
    values: dict[str, Any] = {}
    for p in space.params:
        if isinstance(p, Choice):
            options = list(p.choices) if p.scalar else [json.dumps(c) for c in p.choices]
            values[p.key] = trial.suggest_categorical(p.key, options)
        elif p.is_int:
            step = int(p.step or 1)
            values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=step, log=p.log)
        else:
            values[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
    return decode(space, values)


def decode(space: Space, params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's stored params as config values (list choices back from their JSON text)."""
    lists = {p.key for p in space.params if isinstance(p, Choice) and not p.scalar}
    return {k: json.loads(v) if k in lists else v for k, v in params.items()}
