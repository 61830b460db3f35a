"""The model catalog: models.toml loaded into typed, checked entries.

A model is data. Its tool's JSON Schema (``schema.py``), its argument validation
(``params.py``), the provider request body and its price (``pricing.py``) are all derived from
its entry here; nothing elsewhere branches on a model's slug.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from server.errors import ConfigError

ParamKind = Literal["image", "text", "int", "number", "choice", "bool", "loras"]
ProviderName = Literal["wavespeed", "vtrix"]
# Pillow's names for the formats a provider may document (MPO, a phone's multi-picture JPEG, is JPEG).
ImageFormat = Literal["JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF"]
MIB = 1024 * 1024
Scalar = int | float | str | bool

LORA_SCALE_MIN = 0.0
LORA_SCALE_MAX = 4.0

_DEFAULT_HELP: dict[str, str] = {
    "image": "URL, data: URI or local path.",
    "prompt": "Subject, motion, camera, lighting.",
    "negative_prompt": "What to avoid.",
    "duration": "Seconds.",
    "resolution": "Output resolution.",
    "num_inference_steps": "More: slower, often sharper.",
    "guidance_scale": "Prompt adherence.",
    "flow_shift": "Flow-matching timestep shift.",
    "watermark": "Add the provider's watermark.",
}


# Named and bounded well enough that a description would only repeat them: every tools/list
# carries each description once per tool, so these go without one in the schema.
_SELF_EVIDENT = frozenset(
    {"negative_prompt", "duration", "resolution", "watermark", "guidance_scale", "flow_shift", "seed"}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ParamSpec(_Frozen):
    """One documented parameter of a model."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: ParamKind
    target: str | None = None
    required: bool = False
    default: Scalar | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Scalar, ...] | None = None
    max_length: int | None = Field(default=None, gt=0)
    max_items: int | None = Field(default=None, gt=0)
    omit: tuple[Scalar, ...] = ()
    priced: bool = False
    fits_image: bool = False
    help: str | None = None

    @property
    def body_path(self) -> tuple[str, ...]:
        return tuple((self.target or self.name).split("."))

    @property
    def description(self) -> str:
        return self.help or _DEFAULT_HELP.get(self.name, self.name.replace("_", " ").capitalize() + ".")

    @property
    def schema_description(self) -> str | None:
        """The description in the tool schema; None where the name and bounds say it all."""
        if self.help is None and self.name in _SELF_EVIDENT:
            return None
        return self.description

    def allowed(self) -> str:
        """The allowed values in words, for error messages."""
        if self.choices is not None:
            return "one of " + ", ".join(_show(c) for c in self.choices)
        if self.kind in ("int", "number") and self.min is not None and self.max is not None:
            kind = "an integer" if self.kind == "int" else "a number"
            return f"{kind} from {_show(self.min)} to {_show(self.max)}"
        if self.kind == "text" and self.max_length is not None:
            return f"text of at most {self.max_length} characters"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "loras":
            return (
                f"a list of at most {self.max_items} objects {{path: string, scale: "
                f"{_show(LORA_SCALE_MIN)}-{_show(LORA_SCALE_MAX)}}}"
            )
        if self.kind == "image":
            return "an https:// URL, a data: URI, a local file path or a wan-video:// frame URI"
        return "text"

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"{self.name}: a choice needs choices")
        if self.kind in ("int", "number") and (self.min is None or self.max is None or self.min > self.max):
            raise ValueError(f"{self.name}: a numeric parameter needs min <= max")
        if self.kind == "loras" and self.max_items is None:
            raise ValueError(f"{self.name}: a LoRA list needs max_items")
        if self.fits_image and (
            self.priced or not self.choices or not all(_is_size(c) for c in self.choices)
        ):
            raise ValueError(f"{self.name}: fits_image needs an unpriced choice of W*H sizes")
        if self.required and self.default is not None:
            raise ValueError(f"{self.name}: a required parameter has no default")
        if self.default is not None and not self.accepts(self.default):
            raise ValueError(f"{self.name}: default {self.default!r} is outside its own range")
        return self

    def accepts(self, value: Scalar) -> bool:
        """Whether a scalar default is within this parameter's documented range."""
        if self.choices is not None:
            return value in self.choices and type(value) in {type(c) for c in self.choices}
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind in ("int", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if self.kind == "int" and not isinstance(value, int):
                return False
            low = self.min if self.min is not None else value
            high = self.max if self.max is not None else value
            return low <= value <= high
        return isinstance(value, str)


class ImageLimits(_Frozen):
    """What a model's provider documents about input images; checked before anything is paid.

    ``min_side``/``max_side`` bound the width and the height in pixels (None: not documented).
    ``alpha`` False refuses any image with an alpha channel or transparency.
    """

    formats: tuple[ImageFormat, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
    min_side: int | None = Field(default=None, gt=0)
    max_side: int | None = Field(default=None, gt=0)
    max_mib: float = Field(default=20, gt=0)
    alpha: bool = True

    @property
    def max_bytes(self) -> int:
        return int(self.max_mib * MIB)

    @model_validator(mode="after")
    def _check(self) -> ImageLimits:
        if not self.formats:
            raise ValueError("an image needs at least one allowed format")
        if self.min_side is not None and self.max_side is not None and self.min_side > self.max_side:
            raise ValueError("image min_side must not exceed max_side")
        return self

    def describe(self) -> str:
        """The limits in words, for messages and tool descriptions."""
        parts = ["/".join(self.formats)]
        if self.min_side is not None or self.max_side is not None:
            parts.append(f"{self.min_side or 1}-{self.max_side or 'any'} px a side")
        parts.append(f"at most {_show(self.max_mib)} MB")
        if not self.alpha:
            parts.append("no alpha channel")
        return ", ".join(parts)


class PriceRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    usd: float = Field(ge=0)


class PriceSpec(_Frozen):
    """How a model is priced. ``verified`` is true only for figures from the seed's own table."""

    kind: Literal["per_second", "table"]
    per_second: float | None = Field(default=None, ge=0)
    min_seconds: float = 0
    keys: tuple[str, ...] = ()
    rows: tuple[PriceRow, ...] = ()
    verified: bool
    quote: bool = False
    basis: str


class ModelSpec(_Frozen):
    """One model: where it lives, its parameters and its price."""

    slug: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    provider: ProviderName
    model_id: str
    doc: str
    blurb: str
    typical_seconds: float = Field(gt=0)
    body: dict[str, str] = Field(default_factory=dict[str, str])
    image: ImageLimits = ImageLimits()
    param: tuple[ParamSpec, ...]
    price: PriceSpec

    @property
    def params(self) -> Mapping[str, ParamSpec]:
        return {p.name: p for p in self.param}

    @property
    def priced_params(self) -> tuple[ParamSpec, ...]:
        return tuple(p for p in self.param if p.priced)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        names = [p.name for p in self.param]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.slug}: duplicate parameter names")
        if "image" not in names or not self.params["image"].required:
            raise ValueError(f"{self.slug}: every model takes a required image")
        if any(p.name == "wait_seconds" for p in self.param):
            raise ValueError(f"{self.slug}: wait_seconds is the server's own parameter")
        targets = [p.body_path for p in self.param]
        if len(targets) != len(set(targets)):
            raise ValueError(f"{self.slug}: two parameters share a body target")
        price = self.price
        if price.kind == "per_second" and (price.per_second is None or "duration" not in names):
            raise ValueError(f"{self.slug}: per-second pricing needs per_second and a duration parameter")
        if price.kind == "table":
            self._check_table(price)
        return self

    def _check_table(self, price: PriceSpec) -> None:
        """Every combination the schema allows must have exactly one price row."""
        params = self.params
        for key in price.keys:
            spec = params.get(key)
            if spec is None or spec.choices is None or not spec.priced:
                raise ValueError(f"{self.slug}: price key {key} must be a priced choice parameter")
        seen: set[tuple[Any, ...]] = set()
        for row in price.rows:
            extra = row.model_extra or {}
            combo = tuple(extra.get(k) for k in price.keys)
            for key, value in zip(price.keys, combo, strict=True):
                choices = params[key].choices or ()
                if value not in choices:
                    raise ValueError(f"{self.slug}: price row {key}={value!r} is not an allowed value")
            seen.add(combo)
        expected = 1
        for key in price.keys:
            expected *= len(params[key].choices or ())
        if len(seen) != expected or len(price.rows) != expected:
            raise ValueError(f"{self.slug}: the price table must cover every allowed combination once")


class Catalog(_Frozen):
    """All known models, in catalog order."""

    model: tuple[ModelSpec, ...]

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        slugs = [m.slug for m in self.model]
        if len(slugs) != len(set(slugs)):
            raise ValueError("duplicate model slugs")
        return self

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(m.slug for m in self.model)

    def get(self, slug: str) -> ModelSpec:
        for spec in self.model:
            if spec.slug == slug:
                return spec
        raise KeyError(slug)

    def select(self, slugs: tuple[str, ...] | None) -> tuple[ModelSpec, ...]:
        """The models named in ``WAN_MCP_MODELS`` (all of them when None), checked."""
        if slugs is None:
            return self.model
        unknown = [s for s in slugs if s not in self.slugs]
        if unknown:
            raise ConfigError(
                f"WAN_MCP_MODELS names unknown model(s) {', '.join(unknown)}; "
                f"choose from {', '.join(self.slugs)}."
            )
        return tuple(m for m in self.model if m.slug in slugs)


def parse_catalog(text: str) -> Catalog:
    """Parse and check a catalog document (TOML)."""
    try:
        return Catalog.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"The model catalog is invalid: {exc}") from exc


@cache
def load_catalog() -> Catalog:
    """The catalog shipped with the package."""
    return parse_catalog(resources.files("server.catalog").joinpath("models.toml").read_text("utf-8"))


def size_of(choice: Scalar) -> tuple[int, int]:
    """A ``W*H`` size choice as (width, height)."""
    width, _, height = str(choice).partition("*")
    return int(width), int(height)


def _is_size(choice: Scalar) -> bool:
    width, star, height = str(choice).partition("*")
    return bool(star) and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
