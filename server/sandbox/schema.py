"""A small checker for the vendors' documented parameter tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

Kind = Literal["string", "integer", "number", "boolean", "array", "object"]


@dataclass(frozen=True)
class Field:
    """One documented parameter.

    ``fields`` describes an object's members, or those of each object in an array; None
    accepts anything.
    """

    kind: Kind
    required: bool = False
    choices: tuple[object, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_items: int | None = None
    fields: Mapping[str, Field] | None = None


Schema = Mapping[str, Field]

_ARTICLE = {"string": "a", "integer": "an", "number": "a", "boolean": "a", "array": "an", "object": "an"}


def as_object(value: object) -> dict[str, object] | None:
    """``value`` as a JSON object, or None when it is anything else."""
    if isinstance(value, dict):
        return cast("dict[str, object]", value)
    return None


def check(value: object, schema: Schema, where: str = "", *, partial: bool = False) -> str | None:
    """Say what is wrong with the JSON object ``value``, or return None when it fits ``schema``.

    ``partial`` skips the required-field check (a price quote may omit the image).
    """
    obj = as_object(value)
    if obj is None:
        return f"'{where.rstrip('.')}' must be a JSON object" if where else "body must be a JSON object"
    for name in obj:
        if name not in schema:
            return f"unknown field '{where}{name}'"
    for name, spec in schema.items():
        if name not in obj:
            if spec.required and not partial:
                return f"'{where}{name}' is required"
            continue
        problem = _check_value(obj[name], spec, f"{where}{name}")
        if problem:
            return problem
    return None


def _check_value(value: object, spec: Field, name: str) -> str | None:
    kind_ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[spec.kind]
    if not kind_ok:
        return f"'{name}' must be {_ARTICLE[spec.kind]} {spec.kind}"
    if spec.kind == "string" and spec.required and value == "":
        return f"'{name}' must not be empty"
    if spec.choices and value not in spec.choices:
        return f"'{name}' must be one of {', '.join(str(c) for c in spec.choices)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            return f"'{name}' must be at least {_number(spec.minimum)}"
        if spec.maximum is not None and value > spec.maximum:
            return f"'{name}' must be at most {_number(spec.maximum)}"
    if isinstance(value, list):
        return _check_items(cast("list[object]", value), spec, name)
    if spec.kind == "object" and spec.fields is not None:
        return check(value, spec.fields, f"{name}.")
    return None


def _check_items(items: list[object], spec: Field, name: str) -> str | None:
    if spec.max_items is not None and len(items) > spec.max_items:
        return f"'{name}' may have at most {spec.max_items} items"
    if spec.fields is None:
        return None
    for index, item in enumerate(items):
        problem = check(item, spec.fields, f"{name}[{index}].")
        if problem:
            return problem
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
