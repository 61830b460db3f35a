"""Arguments of a model: their JSON Schema, their validation and the provider request body.

The schema is written out by hand from the catalog entry (compact, and exactly the documented
bounds); validation is a pydantic model generated from the same entry, whose errors are turned
into messages that name the parameter, its allowed values and what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)
from pydantic_core import ErrorDetails

from server.catalog import LORA_SCALE_MAX, LORA_SCALE_MIN, ModelSpec, ParamSpec
from server.errors import InvalidRequest

JsonSchema = dict[str, Any]
NOTHING_SENT = "Nothing was sent and nothing was charged."
# The generate tool's own arguments beside the model's (the core checks them).
SERVER_ARGUMENTS = ("wait_seconds", "new_take", "fix_image", "confirm_cost_usd", "variants")


def _reject_bool(value: object) -> object:
    # JSON true/false must not pass as 1/0 for a numeric parameter.
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


class Lora(BaseModel):
    """One LoRA to apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Annotated[str, Field(min_length=1)]
    scale: Annotated[
        float,
        Field(ge=LORA_SCALE_MIN, le=LORA_SCALE_MAX, allow_inf_nan=False),
        BeforeValidator(_reject_bool),
    ]


def _field_type(spec: ParamSpec) -> Any:
    match spec.kind:
        case "image":
            return Annotated[str, Field(min_length=1)]
        case "text":
            return Annotated[str, Field(max_length=spec.max_length)]
        case "int":
            return Annotated[int, Field(ge=spec.min, le=spec.max), BeforeValidator(_reject_bool)]
        case "number":
            return Annotated[
                float, Field(ge=spec.min, le=spec.max, allow_inf_nan=False), BeforeValidator(_reject_bool)
            ]
        case "choice":
            return Literal[tuple(spec.choices or ())]
        case "bool":
            return bool
        case "loras":
            return Annotated[list[Lora], Field(max_length=spec.max_items)]


def _arguments_model(
    spec: ModelSpec, params: Iterable[ParamSpec], name: str, *, all_optional: bool = False
) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for param in params:
        annotation = _field_type(param)
        if param.required and not all_optional:
            fields[param.name] = (annotation, ...)
        else:
            fields[param.name] = (annotation | None, param.default)
    return create_model(f"{spec.slug}_{name}", __config__=ConfigDict(extra="forbid"), **fields)


_MODELS: dict[tuple[str, str], type[BaseModel]] = {}


def _generate_model(spec: ModelSpec) -> type[BaseModel]:
    key = (spec.slug, "generate")
    if key not in _MODELS:
        _MODELS[key] = _arguments_model(spec, spec.param, "generate")
    return _MODELS[key]


def _estimate_model(spec: ModelSpec) -> type[BaseModel]:
    key = (spec.slug, "estimate")
    if key not in _MODELS:
        _MODELS[key] = _arguments_model(spec, spec.param, "estimate", all_optional=True)
    return _MODELS[key]


def validate_generate(spec: ModelSpec, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check generate arguments against the documented ranges; fill in the defaults.

    Raises:
        InvalidRequest: naming every refused parameter and its allowed values.
    """
    return _validate(spec, _generate_model(spec), arguments, spec.params)


def validate_estimate(spec: ModelSpec, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check an estimate's arguments: the generate tool's, each checked the same way, none required.

    Returns the values with defaults filled in; parameters left out that have no default are None.
    """
    return _validate(spec, _estimate_model(spec), arguments, spec.params)


def _validate(
    spec: ModelSpec, model: type[BaseModel], arguments: Mapping[str, Any], params: Mapping[str, ParamSpec]
) -> dict[str, Any]:
    # JSON null for a parameter means "not given": its default applies, or it is reported missing.
    given = {name: value for name, value in arguments.items() if value is not None}
    try:
        parsed = model.model_validate(given)
    except ValidationError as exc:
        problems = [_explain(error, params) for error in exc.errors(include_url=False)]
        unique = list(dict.fromkeys(problems))
        raise InvalidRequest(f"{spec.slug}: " + " ".join(unique) + f" {NOTHING_SENT}") from None
    # Plain JSON data from here on (a LoRA is a dict, not a model): the journal, the request hash
    # and the provider body all serialise these values.
    values = parsed.model_dump(mode="json")
    for name, param in params.items():
        if param.fits_image and name not in given:
            values[name] = None  # chosen from the image once its pixels are read (server.media)
    return values


def _explain(error: ErrorDetails, params: Mapping[str, ParamSpec]) -> str:
    loc = error["loc"]
    name = str(loc[0]) if loc else "arguments"
    spec = params.get(name)
    if error["type"] == "extra_forbidden" or spec is None:
        accepted = ", ".join((*params, *SERVER_ARGUMENTS))
        return f"Unknown parameter '{name}'; this tool accepts: {accepted}."
    if error["type"] == "missing":
        return f"'{name}' is required: {spec.description}"
    where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    got = _short(error.get("input"))
    if spec.kind == "loras" and len(loc) > 1:
        return f"'{where}' is invalid ({error['msg']}); each LoRA is {{path: string, scale: 0-4}}."
    if spec.kind == "loras" and error["type"] == "too_long":
        return f"'{name}' has too many items; it takes at most {spec.max_items}."
    if spec.kind == "text" and error["type"] == "string_too_long":
        length = len(error["input"]) if isinstance(error["input"], str) else "?"
        return (
            f"'{name}' is {length} characters; the limit is {spec.max_length}. Shorten it (it is never cut)."
        )
    return f"'{where}' must be {spec.allowed()}; got {got}."


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def input_schema(
    spec: ModelSpec,
    params: Iterable[ParamSpec],
    extra: Mapping[str, JsonSchema] | None = None,
    *,
    closed: bool = True,
) -> JsonSchema:
    """The tool's ``inputSchema``: every documented bound, nothing else.

    ``closed`` False leaves ``additionalProperties`` open: an estimate declares only its priced
    parameters and takes the rest of a generate call's arguments as extras.
    """
    properties: dict[str, JsonSchema] = {}
    required: list[str] = []
    for param in params:
        properties[param.name] = _param_schema(param)
        if param.required:
            required.append(param.name)
    properties.update(extra or {})
    schema: JsonSchema = {"type": "object", "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    if required:
        schema["required"] = required
    if any(p.get("items") == {"$ref": LORA_REF} for p in properties.values()):
        schema["$defs"] = {"lora": LORA_SCHEMA}
    return schema


LORA_REF = "#/$defs/lora"
LORA_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "scale": {"type": "number", "minimum": int(LORA_SCALE_MIN), "maximum": int(LORA_SCALE_MAX)},
    },
    "required": ["path", "scale"],
    "additionalProperties": False,
}


def _param_schema(param: ParamSpec) -> JsonSchema:
    out: JsonSchema = {}
    match param.kind:
        case "image":
            out = {"type": "string"}
        case "text":
            out = {"type": "string"}
            if param.max_length is not None:
                out["maxLength"] = param.max_length
        case "int" | "number":
            low, high = param.min, param.max
            if param.kind == "int" or (
                low is not None and low.is_integer() and high is not None and high.is_integer()
            ):
                low, high = int(low or 0), int(high or 0)
            out = {"type": "integer" if param.kind == "int" else "number", "minimum": low, "maximum": high}
        case "choice":
            # The enum's values say their type; a "type" beside them would only cost context.
            out = {"enum": list(param.choices or ())}
        case "bool":
            out = {"type": "boolean"}
        case "loras":
            out = {"type": "array", "maxItems": param.max_items, "items": {"$ref": LORA_REF}}
    if param.default is not None:
        out["default"] = param.default
    if (description := param.schema_description) is not None:
        out["description"] = description
    return out


def build_body(spec: ModelSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's JSON body: each value placed at its documented path.

    ``values`` are validated arguments whose image parameters already hold what the provider
    takes (URL or data URI). ``None`` and each parameter's ``omit`` values are left out.
    """
    body: dict[str, Any] = dict(spec.body)
    for param in spec.param:
        value = values.get(param.name)
        if value is None or any(value == o and type(value) is type(o) for o in param.omit):
            continue
        node = body
        *parents, leaf = param.body_path
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return body
