"""Valid calls, as an agent would write them, through a real MCP client against the emulator.

Cases are generated from the catalog, so a sixth model gets them for free: every optional
parameter at non-default valid values (each enum value, both ends of each range, LoRA lists of one
item and of the maximum, ``last_image`` as an https URL, a local file and a data: URI, optional
text left out). Each completes with exactly one submit, and the provider body carries exactly
those values where the vendor's document puts them (``contract.BODY_PLACES``, written from the
seeds, not from the catalog). Hypothesis then draws whole valid argument sets. Every valid set is
also priced by the matching estimate tool at the contract's price.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult
from PIL import Image

from bench.common import is_crash
from server.app import build_server
from server.catalog import LORA_SCALE_MAX, LORA_SCALE_MIN, ModelSpec, ParamSpec, load_catalog
from server.sandbox import Emulator
from server.sandbox.state import EmuJob
from tests.conftest import make_settings
from tests.contract import BODY_PLACES, OMITTED_FROM_BODY, PRICES, UNVERIFIED
from tests.mcp_helpers import CAT_URL, structured, text_of

MODELS = load_catalog().model
CALL_LIMIT = 30.0


def _png(side: int = 480, color: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, format="PNG")
    return buffer.getvalue()


LAST_FRAME = _png(color=(200, 60, 30))


def _values(param: ParamSpec) -> list[Any]:
    """Valid non-default values of one optional parameter (images handled apart)."""
    match param.kind:
        case "choice":
            return list(param.choices or ())
        case "int":
            return [int(param.min or 0), int(param.max or 0)]
        case "number":
            return [param.min, param.max]
        case "bool":
            return [True, False]
        case "text":
            return ["blurry, low quality"]
        case "loras":
            one = [{"path": "https://example.com/lora/style.safetensors", "scale": LORA_SCALE_MAX}]
            most = [
                {"path": f"org/lora-{i}", "scale": [LORA_SCALE_MIN, 0.75, LORA_SCALE_MAX][i % 3]}
                for i in range(param.max_items or 1)
            ]
            return [one, most]
        case "image":
            return []


def _required(spec: ModelSpec) -> dict[str, Any]:
    return {
        p.name: CAT_URL if p.kind == "image" else "a cat turns its head" for p in spec.param if p.required
    }


def _cases() -> Iterator[Any]:
    for spec in MODELS:
        number = 0
        for param in spec.param:
            if param.required:
                continue
            kinds: list[tuple[str, Any]] = [(repr(v), v) for v in _values(param)]
            if param.kind == "image":
                kinds = [("https", "https://example.com/last.png"), ("file", "FILE"), ("data", "DATA")]
            for label, value in kinds:
                number += 1
                yield pytest.param(spec, param.name, value, number, id=f"{spec.slug}-{param.name}-{label}")
        prompt = spec.params.get("prompt")
        if prompt is not None and not prompt.required:
            yield pytest.param(spec, "prompt", None, 0, id=f"{spec.slug}-prompt-left-out")


def _place(body: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = body
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _sent_image(emulator: Emulator, ref: Any) -> bytes | None:
    return emulator.image_bytes(ref) if isinstance(ref, str) else None


@pytest.fixture
async def client(tmp_path: Path, emulator: Emulator) -> AsyncIterator[Client]:
    settings = make_settings(tmp_path / "home", allowed_dirs=(tmp_path,))
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        yield c


async def _call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(CALL_LIMIT):
        return await client.call_tool(name, arguments)


def _expected_price(spec: ModelSpec, arguments: dict[str, Any]) -> float | None:
    """The contract's price for these arguments (None for models the seeds give no price)."""
    for priced, usd in PRICES.get(spec.slug, []):
        defaults = {k: spec.params[k].default for k in priced}
        if all(arguments.get(k, defaults[k]) == v for k, v in priced.items()):
            return usd
    return None


@pytest.mark.anyio
@pytest.mark.parametrize(("spec", "name", "value", "number"), list(_cases()))
async def test_every_optional_parameter_at_each_valid_value_reaches_the_provider(
    client: Client, emulator: Emulator, tmp_path: Path, spec: ModelSpec, name: str, value: Any, number: int
) -> None:
    arguments = _required(spec)
    # A distinct prompt per case, so no case repeats another one's request.
    if "prompt" in arguments or spec.params.get("prompt"):
        arguments["prompt"] = f"a cat turns its head, take {number}"
    if value is None:
        arguments.pop(name, None)
        arguments["seed"] = 4242
    elif value == "FILE":
        path = tmp_path / "pictures" / "last.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(LAST_FRAME)
        arguments[name] = str(path)
    elif value == "DATA":
        arguments[name] = "data:image/png;base64," + base64.b64encode(LAST_FRAME).decode()
    else:
        arguments[name] = value

    before = len(emulator.submissions())
    result = await _call(client, f"{spec.slug}_generate_video", arguments)
    record = structured(result)
    assert not result.is_error, text_of(result)
    assert record["status"] == "completed", record
    jobs = emulator.submissions()
    assert len(jobs) == before + 1
    _check_body(emulator, spec, jobs[-1], arguments, name, value)

    estimate = await _call(client, f"{spec.slug}_estimate_cost", arguments)
    assert not estimate.is_error, text_of(estimate)
    priced = structured(estimate)
    expected = _expected_price(spec, arguments)
    if expected is not None:
        assert priced["usd"] == pytest.approx(expected)
        assert priced["source"] == "seed_price_table"
    else:
        assert spec.slug in UNVERIFIED
        assert priced["source"] in ("unverified_estimate", "provider_quote")
    assert record["estimate_usd"] == pytest.approx(priced["usd"])
    assert set(priced["priced_by"]) | set(priced["not_priced"]) == {
        k for k, v in arguments.items() if v is not None
    }


def _check_body(
    emulator: Emulator, spec: ModelSpec, job: EmuJob, arguments: dict[str, Any], name: str, value: Any
) -> None:
    places = BODY_PLACES[spec.provider]
    found, sent = _place(job.body, places.get(name, places["*"](name)))
    if value is None:
        assert not found, f"{name} was left out but the body has {sent!r}"
        return
    if spec.params[name].kind == "image":
        assert found, job.body
        if value.startswith("https://"):
            assert sent == value
        else:
            assert _sent_image(emulator, sent) == LAST_FRAME
        return
    if OMITTED_FROM_BODY.get((spec.provider, name)) == value:
        assert not found, f"{name}={value!r} means 'leave it out' to {spec.provider}; body has {sent!r}"
        return
    assert found, f"{name} missing from {job.body}"
    assert sent == value
    assert type(sent) is type(value) or isinstance(value, float)
    for other in arguments:
        if other != name and spec.params[other].kind != "image":
            assert _place(job.body, places.get(other, places["*"](other)))[1] == arguments[other]


@pytest.mark.anyio
async def test_a_lora_call_with_three_lists_of_three_completes(client: Client, emulator: Emulator) -> None:
    loras = [{"path": f"https://example.com/lora/{i}.safetensors", "scale": 0.5 + i} for i in range(3)]
    arguments = {
        "image": CAT_URL,
        "prompt": "a cat turns its head",
        "loras": loras[:1],
        "high_noise_loras": loras,
        "low_noise_loras": list(reversed(loras)),
    }
    result = await _call(client, "wan22_i2v_480p_lora_ultra_fast_generate_video", arguments)
    assert structured(result)["status"] == "completed", text_of(result)
    body = emulator.submissions()[-1].body
    assert body["loras"] == loras[:1]
    assert body["high_noise_loras"] == loras
    assert body["low_noise_loras"] == list(reversed(loras))
    assert structured(result)["parameters"]["high_noise_loras"] == loras


# --- whole valid argument sets, drawn by Hypothesis ------------------------------------------------

PROMPTS_IN_OTHER_SCRIPTS = [
    "一只猫慢慢转过头\uff0c镜头缓慢推进\uff0c暖色灯光",
    "caméra lente, lumière chaude",
    "🐱 turns",
]
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60
) | st.sampled_from(PROMPTS_IN_OTHER_SCRIPTS)


def _param_strategy(param: ParamSpec) -> st.SearchStrategy[Any]:
    match param.kind:
        case "choice":
            return st.sampled_from(list(param.choices or ()))
        case "int":
            return st.integers(int(param.min or 0), int(param.max or 0))
        case "number":
            return st.floats(param.min, param.max, allow_nan=False, allow_infinity=False)
        case "bool":
            return st.booleans()
        case "text":
            if param.max_length is not None:
                return _TEXT.filter(lambda t: len(t) <= (param.max_length or 0)) | st.just(
                    "x" * param.max_length
                )
            return _TEXT
        case "loras":
            lora = st.fixed_dictionaries(
                {
                    "path": st.sampled_from(["org/style", "https://example.com/a.safetensors"]),
                    "scale": st.floats(LORA_SCALE_MIN, LORA_SCALE_MAX, allow_nan=False),
                }
            )
            return st.lists(lora, max_size=param.max_items or 1)
        case "image":
            return st.sampled_from([CAT_URL, "https://example.com/last.jpg", "DATA"])


@st.composite
def valid_calls(draw: st.DrawFn, spec: ModelSpec) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for param in spec.param:
        if param.required or draw(st.booleans()):
            arguments[param.name] = draw(_param_strategy(param))
    return arguments


@contextmanager
def _portal_client(home: Path) -> Iterator[tuple[BlockingPortal, Client, Emulator]]:
    emulator = Emulator(wavespeed_key="ws-test-key-0123456789", vtrix_key="vx-test-key-0123456789")
    emulator.render_scale = 0.1
    emulator.fps = 2
    settings = make_settings(home, allowed_dirs=(home,), default_wait_seconds=20.0)
    with start_blocking_portal("asyncio") as portal:
        client = Client(build_server(settings, transport=emulator.transport()))
        with portal.wrap_async_context_manager(client) as opened:
            yield portal, opened, emulator


@pytest.mark.parametrize("spec", MODELS, ids=[m.slug for m in MODELS])
def test_valid_argument_sets_complete_once_or_are_refused_with_a_reason(
    tmp_path: Path, spec: ModelSpec
) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(LAST_FRAME).decode()
    seen: list[dict[str, Any]] = []
    with _portal_client(tmp_path / "home") as (portal, client, emulator):

        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(valid_calls(spec))
        def check(drawn: dict[str, Any]) -> None:
            arguments = {k: data_uri if v == "DATA" else v for k, v in drawn.items()}
            # Hypothesis may draw the same set twice: a new take is a new submit either way.
            arguments["new_take"] = True
            before = len(emulator.submissions())
            result = portal.call(_call, client, f"{spec.slug}_generate_video", arguments)
            text = text_of(result)
            assert not is_crash(text), (spec.slug, arguments, text)
            if result.is_error:
                assert "Nothing was sent" in text, text
                assert len(emulator.submissions()) == before
            else:
                assert structured(result)["status"] == "completed", text
                assert len(emulator.submissions()) == before + 1
            estimate = portal.call(_call, client, f"{spec.slug}_estimate_cost", arguments)
            assert not estimate.is_error, text_of(estimate)
            expected = _expected_price(spec, arguments)
            if expected is not None:
                assert structured(estimate)["usd"] == pytest.approx(expected)
            seen.append(arguments)

        check()
    assert len(seen) >= 5, f"Hypothesis ran only {len(seen)} valid calls of {spec.slug}"
