"""The catalog against the contract: schemas, validation messages, prices, and its own checks."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from server.catalog import load_catalog, parse_catalog
from server.catalog.params import build_body, input_schema, validate_estimate, validate_generate
from server.catalog.pricing import catalog_price
from server.errors import ConfigError, InvalidRequest
from tests.contract import ENDPOINTS, PARAMS, PRICES, UNVERIFIED, bad_values

CATALOG = load_catalog()


def test_catalog_has_the_five_contract_models_in_order() -> None:
    assert CATALOG.slugs == tuple(PARAMS)
    for spec in CATALOG.model:
        path = ENDPOINTS[spec.slug]
        if spec.provider == "wavespeed":
            assert path == f"/api/v3/{spec.model_id}"
        else:
            assert spec.model_id == "wan22_i2v_flash"
            assert spec.body == {"model": "wan22_i2v_flash"}


NEEDS_DESCRIPTION = {"image", "prompt", "last_image", "loras", "high_noise_loras", "low_noise_loras", "size"}


@pytest.mark.parametrize("slug", list(PARAMS))
def test_schema_carries_every_documented_bound(slug: str) -> None:
    spec = CATALOG.get(slug)
    schema = input_schema(spec, spec.param)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(PARAMS[slug])
    required = {name for name, facts in PARAMS[slug].items() if facts.get("required")}
    assert set(schema.get("required", [])) == required
    for name, facts in PARAMS[slug].items():
        prop = schema["properties"][name]
        # Self-evident names (duration, seed, ...) go without one; what an agent must be told has one.
        if name in NEEDS_DESCRIPTION or "description" in prop:
            assert prop["description"], (slug, name)
        for key in ("enum", "default", "minimum", "maximum", "maxLength", "type"):
            if key in facts:
                assert prop[key] == facts[key], (slug, name, key)
        if "maxItems" in facts:
            assert prop["maxItems"] == facts["maxItems"]
            items = prop["items"]
            if "$ref" in items:
                items = schema["$defs"][items["$ref"].rsplit("/", 1)[1]]
            scale = items["properties"]["scale"]
            assert (scale["minimum"], scale["maximum"]) == facts["scale"]


@pytest.mark.parametrize(("slug", "name", "value"), [(s, n, v) for s in PARAMS for n, v in bad_values(s)])
def test_every_bound_is_refused_with_the_parameter_named(slug: str, name: str, value: Any) -> None:
    spec = CATALOG.get(slug)
    arguments = {"image": "https://example.com/cat.png", "prompt": "a cat", name: value}
    with pytest.raises(InvalidRequest) as caught:
        validate_generate(spec, arguments)
    message = str(caught.value)
    assert f"'{name}" in message
    assert "Nothing was sent" in message


def test_messages_say_the_allowed_values() -> None:
    spec = CATALOG.get("wan22_i2v")
    with pytest.raises(InvalidRequest, match=r"'duration' must be one of 5, 8; got 7"):
        validate_generate(spec, {"image": "https://x.test/a.png", "prompt": "p", "duration": 7})
    spec = CATALOG.get("wan21_i2v_480p")
    with pytest.raises(
        InvalidRequest, match=r"'num_inference_steps' must be an integer from 1 to 40; got 41"
    ):
        validate_generate(spec, {"image": "https://x.test/a.png", "prompt": "p", "num_inference_steps": 41})
    spec = CATALOG.get("wan22_i2v_flash")
    with pytest.raises(InvalidRequest, match=r"'prompt' is 801 characters; the limit is 800"):
        validate_generate(spec, {"image": "https://x.test/a.png", "prompt": "p" * 801})


def test_unknown_missing_and_boolean_for_number_are_refused() -> None:
    spec = CATALOG.get("wan22_i2v_480p_ultra_fast")
    with pytest.raises(InvalidRequest, match=r"Unknown parameter 'resolution'; this tool accepts: image"):
        validate_generate(spec, {"image": "https://x.test/a.png", "prompt": "p", "resolution": "720p"})
    with pytest.raises(InvalidRequest, match=r"'prompt' is required"):
        validate_generate(spec, {"image": "https://x.test/a.png"})
    with pytest.raises(InvalidRequest, match=r"'seed' must be an integer"):
        validate_generate(spec, {"image": "https://x.test/a.png", "prompt": "p", "seed": True})


def test_defaults_are_filled_and_the_body_follows_the_documented_paths() -> None:
    flash = CATALOG.get("wan22_i2v_flash")
    values = validate_generate(flash, {"image": "https://x.test/a.png", "prompt": "waves"})
    assert build_body(flash, values) == {
        "model": "wan22_i2v_flash",
        "input": {"img_url": "https://x.test/a.png", "prompt": "waves"},
        "parameters": {"resolution": "720P", "duration": 5, "prompt_extend": True, "watermark": False},
    }
    values = validate_generate(flash, {"image": "https://x.test/a.png", "seed": 42})
    assert build_body(flash, values)["parameters"]["seed"] == 42
    wan21 = CATALOG.get("wan21_i2v_480p")
    values = validate_generate(wan21, {"image": "https://x.test/a.png", "prompt": "p", "guidance_scale": 7.5})
    # A size left out is chosen from the image's pixels once they are read (tests/test_first_contact.py).
    assert values["size"] is None
    assert build_body(wan21, {**values, "size": "832*480"}) == {
        "image": "https://x.test/a.png",
        "prompt": "p",
        "size": "832*480",
        "num_inference_steps": 30,
        "duration": 5,
        "guidance_scale": 7.5,
        "flow_shift": 3,
        "seed": -1,
    }
    lora = CATALOG.get("wan22_i2v_480p_lora_ultra_fast")
    values = validate_generate(
        lora, {"image": "https://x.test/a.png", "prompt": "p", "loras": [{"path": "a/b", "scale": 1}]}
    )
    assert build_body(lora, values)["loras"] == [{"path": "a/b", "scale": 1.0}]


@pytest.mark.parametrize(
    ("slug", "arguments", "usd"), [(s, a, u) for s, rows in PRICES.items() for a, u in rows]
)
def test_prices_reproduce_the_seed_tables_to_the_cent(
    slug: str, arguments: dict[str, Any], usd: float
) -> None:
    spec = CATALOG.get(slug)
    estimate = catalog_price(spec, validate_estimate(spec, arguments))
    assert estimate.usd == usd
    assert estimate.source == "seed_price_table"


@pytest.mark.parametrize("slug", UNVERIFIED)
def test_unpublished_prices_say_they_are_unverified(slug: str) -> None:
    spec = CATALOG.get(slug)
    estimate = catalog_price(spec, validate_estimate(spec, {}))
    assert estimate.source == "unverified_estimate"
    assert "unverified" in estimate.basis
    assert estimate.usd > 0


def test_a_catalog_whose_price_table_misses_a_combination_is_refused() -> None:
    text = resources.files("server.catalog").joinpath("models.toml").read_text("utf-8")
    broken = text.replace('{ resolution = "720p", duration = 8, usd = 0.48 },', "")
    with pytest.raises(ConfigError, match="every allowed combination"):
        parse_catalog(broken)
    out_of_range = text.replace("  default = 30\n", "  default = 41\n")
    with pytest.raises(ConfigError, match="outside its own range"):
        parse_catalog(out_of_range)
