"""The tool surface through the SDK's in-memory client, in both protocol eras, against the
emulator mounted in-process: listing, estimates, generate, get_result, errors, resources."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ResourceLink, TextResourceContents
from pydantic import SecretStr

from server.app import build_server
from server.sandbox import Emulator, Fault
from server.settings import Settings
from tests.conftest import make_settings
from tests.contract import PARAMS, PRICES, TOOL_NAMES, UNVERIFIED, bad_values
from tests.mcp_helpers import ERAS, ProgressLog, minimal_arguments, structured, text_of


@pytest.fixture(params=ERAS)
async def client(
    request: pytest.FixtureRequest, settings: Settings, emulator: Emulator
) -> AsyncIterator[Client]:
    server = build_server(settings, transport=emulator.transport())
    async with Client(server, mode=request.param) as c:
        yield c


def check_schema(tool_schema: dict[str, Any], slug: str) -> None:
    props = tool_schema["properties"]
    for name, facts in PARAMS[slug].items():
        for key in ("enum", "default", "minimum", "maximum", "maxLength", "maxItems"):
            if key in facts:
                assert props[name][key] == facts[key], (slug, name, key)
    assert set(tool_schema.get("required", [])) == {n for n, f in PARAMS[slug].items() if f.get("required")}
    assert props["wait_seconds"]["maximum"] >= 60


@pytest.mark.anyio
async def test_tools_list_has_the_contract_tools_with_their_bounds(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert sorted(t.name for t in tools) == TOOL_NAMES
    by_name = {t.name: t for t in tools}
    for slug in PARAMS:
        generate = by_name[f"{slug}_generate_video"]
        check_schema(generate.input_schema, slug)
        assert generate.annotations is not None
        assert generate.annotations.destructive_hint is False
        # Left out on the wire: the spec's default for openWorldHint is true.
        assert generate.annotations.open_world_hint in (None, True)
        assert generate.annotations.read_only_hint is not True
        assert generate.title
        assert generate.description
        estimate = by_name[f"{slug}_estimate_cost"]
        assert estimate.annotations is not None
        assert estimate.annotations.read_only_hint is True
    assert by_name["get_result"].annotations is not None
    assert by_name["get_result"].annotations.read_only_hint is True


@pytest.mark.anyio
async def test_models_setting_registers_only_the_named_models(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, models=("wan22_i2v_flash",))
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
    assert names == [
        "get_result",
        "list_jobs",
        "read_video_chunk",
        "stitch_videos",
        "wan22_i2v_flash_estimate_cost",
        "wan22_i2v_flash_generate_video",
    ]


@pytest.mark.anyio
async def test_estimates_reproduce_the_price_tables(client: Client, emulator: Emulator) -> None:
    for slug, rows in PRICES.items():
        for arguments, usd in rows:
            result = await client.call_tool(f"{slug}_estimate_cost", arguments)
            record = structured(result)
            assert (record["usd"], record["source"]) == (usd, "seed_price_table"), slug
    for slug in UNVERIFIED:
        record = structured(await client.call_tool(f"{slug}_estimate_cost", {}))
        assert record["source"] in ("unverified_estimate", "provider_quote")
        assert record["usd"] > 0
    assert emulator.submissions() == []


@pytest.mark.anyio
async def test_wan21_estimate_uses_the_providers_quote_when_a_key_is_set(
    client: Client, emulator: Emulator
) -> None:
    record = structured(await client.call_tool("wan21_i2v_480p_estimate_cost", {"duration": 10}))
    assert record["source"] == "provider_quote"
    assert [c.route for c in emulator.calls] == ["ws.price"]
    assert emulator.calls[0].json == {"model_id": "wavespeed-ai/wan-2.1/i2v-480p", "inputs": {"duration": 10}}


@pytest.mark.anyio
@pytest.mark.parametrize("slug", list(PARAMS))
async def test_generate_completes_with_progress_and_get_result_agrees(
    client: Client, emulator: Emulator, slug: str
) -> None:
    progress = ProgressLog()
    with anyio.fail_after(20):
        result = await client.call_tool(
            f"{slug}_generate_video", minimal_arguments(slug), progress_callback=progress
        )
    record = structured(result)
    assert record["status"] == "completed", text_of(result)
    assert record["video_url"].startswith("http://testserver/sandbox/files/")
    assert record["job_id"].startswith(f"{slug}-")
    assert progress.events, "no progress notification arrived"
    assert progress.messages[-1] == "done"
    values = [p for p, _, _ in progress.events]
    assert values == sorted(values)
    links = [b for b in result.content if isinstance(b, ResourceLink)]
    assert [link.mime_type for link in links] == ["application/json", "video/mp4"]
    again = structured(await client.call_tool("get_result", {"job_id": record["job_id"]}))
    assert again["video_url"] == record["video_url"]
    assert again["status"] == "completed"
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("slug", "name", "value"), [(s, n, v) for s in PARAMS for n, v in bad_values(s)])
async def test_out_of_range_arguments_are_refused_before_any_request(
    client: Client, emulator: Emulator, slug: str, name: str, value: Any
) -> None:
    result = await client.call_tool(f"{slug}_generate_video", {**minimal_arguments(slug), name: value})
    assert result.is_error
    message = text_of(result)
    assert f"'{name}" in message
    assert "Nothing was sent" in message
    assert emulator.calls == []


@pytest.mark.anyio
async def test_refusal_names_allowed_values(client: Client, emulator: Emulator) -> None:
    result = await client.call_tool(
        "wan22_i2v_generate_video", {**minimal_arguments("wan22_i2v"), "resolution": "1080p"}
    )
    assert result.is_error
    assert "'resolution' must be one of \"480p\", \"720p\"; got '1080p'" in text_of(result)
    result = await client.call_tool("wan22_i2v_generate_video", {"prompt": "no image"})
    assert "'image' is required" in text_of(result)
    result = await client.call_tool(
        "wan22_i2v_generate_video", {**minimal_arguments("wan22_i2v"), "wait_seconds": -1}
    )
    assert "'wait_seconds' must be a number from 0" in text_of(result)
    assert emulator.calls == []


@pytest.mark.anyio
async def test_wait_zero_returns_the_job_id_at_once_and_get_result_waits(
    client: Client, emulator: Emulator
) -> None:
    emulator.hold = True
    record = structured(
        await client.call_tool(
            "wan22_i2v_flash_generate_video", {**minimal_arguments("f"), "wait_seconds": 0}
        )
    )
    assert record["status"] in ("queued", "running")
    job_id = record["job_id"]
    short = structured(await client.call_tool("get_result", {"job_id": job_id, "wait_seconds": 0}))
    assert short["status"] in ("queued", "running")
    emulator.release()
    with anyio.fail_after(10):
        done = structured(await client.call_tool("get_result", {"job_id": job_id, "wait_seconds": 10}))
    assert done["status"] == "completed"
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
async def test_a_failed_job_is_reported_with_its_reason(client: Client, emulator: Emulator) -> None:
    emulator.fail_next_job("the input image could not be decoded")
    result = await client.call_tool("wan22_i2v_generate_video", minimal_arguments("wan22_i2v"))
    record = structured(result)
    assert result.is_error
    assert record["status"] == "failed"
    assert "could not be decoded" in record["error"]
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
async def test_a_vtrix_failed_job_is_reported_with_its_reason(client: Client, emulator: Emulator) -> None:
    emulator.fail_next_job("Video generation failed")
    record = structured(await client.call_tool("wan22_i2v_flash_generate_video", minimal_arguments("f")))
    assert record["status"] == "failed"
    assert "Video generation failed" in record["error"]


@pytest.mark.anyio
async def test_a_refused_key_is_a_clear_error_and_creates_nothing(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(
        tmp_path, wavespeed_api_key=SecretStr("wrong-key"), vtrix_api_key=SecretStr("wrong")
    )
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        for slug in ("wan22_i2v", "wan22_i2v_flash"):
            result = await c.call_tool(f"{slug}_generate_video", minimal_arguments(slug))
            assert result.is_error
            assert "refused the API key" in text_of(result)
            assert "wrong" not in text_of(result)
    assert emulator.submissions() == []


@pytest.mark.anyio
async def test_a_missing_key_names_the_variable(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, wavespeed_api_key=None, vtrix_api_key=None)
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        ws = await c.call_tool("wan22_i2v_generate_video", minimal_arguments("wan22_i2v"))
        vx = await c.call_tool("wan22_i2v_flash_generate_video", minimal_arguments("f"))
    assert ws.is_error
    assert "WAVESPEED_API_KEY is not set" in text_of(ws)
    assert vx.is_error
    assert "VTRIX_API_KEY is not set" in text_of(vx)
    assert emulator.calls == []


@pytest.mark.anyio
async def test_a_429_storm_on_polls_is_ridden_out(client: Client, emulator: Emulator) -> None:
    emulator.inject("ws.result", Fault.status(429, retry_after=0), times=6)
    emulator.inject("vx.task", Fault.status(429), times=6)
    for slug in ("wan22_i2v_480p_ultra_fast", "wan22_i2v_flash"):
        with anyio.fail_after(20):
            record = structured(await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug)))
        assert record["status"] == "completed"
    assert len(emulator.submissions()) == 2


@pytest.mark.anyio
async def test_429_on_submit_is_retried_because_nothing_was_created(
    client: Client, emulator: Emulator
) -> None:
    emulator.inject("ws.submit", Fault.status(429, retry_after=0), times=2)
    record = structured(await client.call_tool("wan22_i2v_generate_video", minimal_arguments("wan22_i2v")))
    assert record["status"] == "completed"
    assert len(emulator.submissions()) == 1
    assert sum(c.route == "ws.submit" for c in emulator.calls) == 3


@pytest.mark.anyio
async def test_a_429_storm_on_submit_ends_in_a_clear_error(client: Client, emulator: Emulator) -> None:
    emulator.inject("vx.submit", Fault.status(429, retry_after=0), times=10)
    result = await client.call_tool("wan22_i2v_flash_generate_video", minimal_arguments("f"))
    assert result.is_error
    assert "rate-limiting" in text_of(result)
    assert emulator.submissions() == []


@pytest.mark.anyio
async def test_5xx_on_polls_is_retried(client: Client, emulator: Emulator) -> None:
    emulator.inject("ws.result", Fault.status(503), times=3)
    emulator.inject("ws.result", Fault.malformed(), times=1)
    record = structured(await client.call_tool("wan22_i2v_generate_video", minimal_arguments("wan22_i2v")))
    assert record["status"] == "completed"


@pytest.mark.anyio
async def test_5xx_on_submit_is_unconfirmed_and_never_resubmitted(client: Client, emulator: Emulator) -> None:
    emulator.inject("ws.submit", Fault.status(502))
    result = await client.call_tool("wan22_i2v_generate_video", minimal_arguments("wan22_i2v"))
    record = structured(result)
    assert record["status"] == "unconfirmed"
    assert "not resubmitted" in record["error"]
    assert sum(c.route == "ws.submit" for c in emulator.calls) == 1


@pytest.mark.anyio
async def test_a_lost_submit_answer_is_never_resubmitted(client: Client, emulator: Emulator) -> None:
    emulator.inject("vx.submit", Fault.drop())
    record = structured(await client.call_tool("wan22_i2v_flash_generate_video", minimal_arguments("f")))
    assert record["status"] == "unconfirmed"
    assert len(emulator.submissions()) == 1
    assert sum(c.route == "vx.submit" for c in emulator.calls) == 1


@pytest.mark.anyio
async def test_unknown_job_id_is_a_clear_error(client: Client) -> None:
    result = await client.call_tool("get_result", {"job_id": "wan22_i2v-000000000000"})
    assert result.is_error
    assert "No job has the id" in text_of(result)


@pytest.mark.anyio
async def test_resources_read_the_job_record_and_the_recent_jobs(client: Client) -> None:
    result = await client.call_tool("wan22_i2v_flash_generate_video", minimal_arguments("f"))
    record = structured(result)
    link = next(b for b in result.content if isinstance(b, ResourceLink))
    contents = (await client.read_resource(link.uri)).contents
    assert isinstance(contents[0], TextResourceContents)
    assert json.loads(contents[0].text)["video_url"] == record["video_url"]
    listing = (await client.read_resource("wan-video://jobs")).contents
    assert isinstance(listing[0], TextResourceContents)
    assert [j["job_id"] for j in json.loads(listing[0].text)] == [record["job_id"]]


@pytest.mark.anyio
async def test_a_job_survives_a_server_restart(settings: Settings, emulator: Emulator) -> None:
    emulator.hold = True
    async with Client(build_server(settings, transport=emulator.transport())) as first:
        record = structured(
            await first.call_tool("wan22_i2v_generate_video", {**minimal_arguments("w"), "wait_seconds": 0})
        )
    emulator.release()
    async with Client(build_server(settings, transport=emulator.transport())) as second:
        with anyio.fail_after(10):
            done = structured(
                await second.call_tool("get_result", {"job_id": record["job_id"], "wait_seconds": 10})
            )
    assert done["status"] == "completed"
    assert len(emulator.submissions()) == 1


def test_bad_values_cover_every_bounded_parameter() -> None:
    for slug, params in PARAMS.items():
        bounded = {
            n
            for n, f in params.items()
            if {"enum", "minimum", "maxLength", "maxItems"} & set(f) or f.get("type") == "boolean"
        }
        assert bounded <= {n for n, _ in bad_values(slug)}, slug


@pytest.mark.anyio
async def test_a_sandbox_server_leaves_real_jobs_alone(settings: Settings, emulator: Emulator) -> None:
    emulator.hold = True
    async with Client(build_server(settings, transport=emulator.transport())) as real:
        record = structured(
            await real.call_tool("wan22_i2v_generate_video", {**minimal_arguments("w"), "wait_seconds": 0})
        )
    sandbox = settings.model_copy(update={"sandbox": True})
    async with Client(build_server(sandbox)) as client:
        seen = structured(
            await client.call_tool("get_result", {"job_id": record["job_id"], "wait_seconds": 1})
        )
        estimate = structured(await client.call_tool("wan22_i2v_estimate_cost", {}))
    assert seen["status"] in ("queued", "running")
    assert "without --sandbox" in seen["warning"]
    assert estimate["sandbox"] is True
    emulator.release()
    async with Client(build_server(settings, transport=emulator.transport())) as real:
        with anyio.fail_after(10):
            done = structured(
                await real.call_tool("get_result", {"job_id": record["job_id"], "wait_seconds": 10})
            )
    assert done["status"] == "completed"
    assert len(emulator.submissions()) == 1
