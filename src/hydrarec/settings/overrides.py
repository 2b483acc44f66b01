"""``--set section.key=value`` overrides, applied to a raw config dict before it is validated.

The dotted key is checked against the fields of a pydantic schema as it is walked, so a key that
does not exist is an error naming what is allowed there, not a silent no-op. A list of sections
(``tasks``) is addressed by each entry's ``name``: ``tasks.NAME.key=value``.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import tomllib
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hydrarec.errors import ConfigError


def apply_override(raw: dict[str, Any], assignment: str, schema: type[BaseModel]) -> None:
    """Apply one ``section.key=value`` override to ``raw`` (a dict of ``schema``), in place.

    The value is parsed as TOML (so ``3``, ``0.5``, ``true``, ``"x"``, ``[1, 2]`` work); a bare
    word is taken as a string.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value")
    key, text = assignment.split("=", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.strip().split(".")
    node: Any = raw
    fields: dict[str, FieldInfo] | None = schema.model_fields  # None: node is a list of sections
    item_fields: dict[str, FieldInfo] = {}
    for i, part in enumerate(parts):
        if fields is None:  # tasks.NAME
            entries = [t for t in node if isinstance(t, dict)]
            match = [t for t in entries if t.get("name") == part]
            if not match:
                known = ", ".join(str(t.get("name")) for t in entries)
                raise ConfigError(f"--set {key}: no task named {part!r} (tasks: {known})")
            node, fields = match[0], item_fields
            continue
        if part not in fields:
            allowed = ", ".join(fields)
            raise ConfigError(f"--set {key}: unknown key {part!r} (allowed here: {allowed})")
        if i == len(parts) - 1:
            node[part] = value
            return
        annotation = fields[part].annotation
        item = _section_fields(typing.get_args(annotation)[0]) if _is_list(annotation) else None
        node = node.setdefault(part, [] if item is not None else {})
        if item is not None and isinstance(node, list):
            fields, item_fields = None, item
        elif (sub := _section_fields(annotation)) is not None and isinstance(node, dict):
            fields = sub
        elif _section_fields(annotation) is not None:  # e.g. train = 5 in the file
            raise ConfigError(f"--set {key}: {part!r} holds {node!r}, not a section of keys")
        else:
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
    raise ConfigError(f"--set {key}: incomplete key")


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _section_fields(annotation: Any) -> dict[str, FieldInfo] | None:
    """The fields of a section type: a model, or a union of models (every member's fields);
    None for a value type."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_fields
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_section_fields(a) for a in typing.get_args(annotation)]
        if members and all(m is not None for m in members):
            return {k: v for m in members if m is not None for k, v in m.items()}
    return None
