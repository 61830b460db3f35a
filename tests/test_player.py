"""The player in process: tool metadata, the ui:// resource, the chunked video tool and the
player's extra facts, through the SDK's in-memory client in both protocol eras."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult, TextResourceContents

from server.app import build_server
from server.sandbox import Emulator
from server.settings import PollPolicy, Settings, SpendPolicy
from tests.conftest import make_settings
from tests.contract import PARAMS
from tests.mcp_helpers import ERAS, minimal_arguments, structured, text_of
from tests.player_host import APPS_CLIENT
from tools.player import CHUNK_BYTES, PLAYER_URI, player_html

pytestmark = pytest.mark.anyio
MODEL = "wan22_i2v_480p_ultra_fast"


@pytest.fixture(params=ERAS)
async def apps_client(
    request: pytest.FixtureRequest, settings: Settings, emulator: Emulator
) -> AsyncIterator[Client]:
    server = build_server(settings, transport=emulator.transport())
    async with Client(server, mode=request.param, extensions=[APPS_CLIENT]) as c:
        yield c


async def completed_job(client: Client) -> dict[str, Any]:
    record = structured(await client.call_tool(f"{MODEL}_generate_video", minimal_arguments(MODEL)))
    assert record["status"] == "completed", record
    return record


async def chunk(client: Client, job_id: str, offset: int | None = None) -> CallToolResult:
    arguments: dict[str, Any] = {"job_id": job_id}
    if offset is not None:
        arguments["offset"] = offset
    return await client.call_tool("read_video_chunk", arguments)


async def test_the_server_advertises_the_apps_extension(settings: Settings, emulator: Emulator) -> None:
    # In the modern era only: in the legacy handshake the SDK drops the server's extensions.
    async with Client(build_server(settings, transport=emulator.transport()), extensions=[APPS_CLIENT]) as c:
        assert c.server_capabilities.extensions is not None
        assert c.server_capabilities.extensions[EXTENSION_ID] == {}


async def test_generate_tools_and_get_result_name_the_player(apps_client: Client) -> None:
    by_name = {t.name: t for t in (await apps_client.list_tools()).tools}
    ui_tools = [f"{slug}_generate_video" for slug in PARAMS] + ["get_result"]
    for name in ui_tools:
        assert (by_name[name].meta or {})["ui"] == {"resourceUri": PLAYER_URI}, name
    for name in [f"{slug}_estimate_cost" for slug in PARAMS] + ["list_jobs"]:
        assert "ui" not in (by_name[name].meta or {}), name
    reader = by_name["read_video_chunk"]
    assert (reader.meta or {})["ui"] == {"resourceUri": PLAYER_URI, "visibility": ["app"]}
    assert "player app" in (reader.description or "")
    assert "local_path" in (reader.description or "")
    assert reader.annotations is not None
    assert reader.annotations.read_only_hint is True
    assert reader.input_schema["required"] == ["job_id"]
    assert reader.input_schema["properties"]["offset"]["minimum"] == 0
    # Small: every byte of tools/list counts, and a non-Apps client lists this tool too.
    assert len(reader.model_dump_json(by_alias=True, exclude_none=True)) < 420


async def test_the_player_resource_is_one_self_contained_app_document(apps_client: Client) -> None:
    listed = [r for r in (await apps_client.list_resources()).resources if r.uri.startswith("ui://")]
    assert [(r.uri, r.mime_type) for r in listed] == [(PLAYER_URI, APP_MIME_TYPE)]
    contents = (await apps_client.read_resource(PLAYER_URI)).contents
    assert len(contents) == 1
    page = contents[0]
    assert isinstance(page, TextResourceContents)
    assert page.mime_type == APP_MIME_TYPE
    # No csp (the spec's default applies) and never a host-specific domain.
    assert page.meta == {"ui": {"prefersBorder": True}}
    html = page.text
    assert html == player_html()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "</html>" in html
    # Nothing from elsewhere: no URLs, no external script/style/link, no network APIs.
    assert not re.search(r"(?i)\b(?:https?|wss?|ftp):/", html)
    assert not re.search(r"(?i)<(?:link|iframe|object|embed|base)\b", html)
    assert not re.search(r"(?i)<script[^>]*\bsrc\s*=", html)
    assert not re.search(r"(?i)@import|url\(", html)
    assert not re.search(r"\b(?:fetch|XMLHttpRequest|WebSocket|EventSource|importScripts)\b|import\(", html)
    assert "createObjectURL" not in html  # blob: is blocked by the default CSP
    for attribute in re.findall(r'(?i)\b(?:src|href|poster)\s*=\s*"([^"]*)"', html):
        assert attribute.startswith("data:"), attribute


async def test_the_video_comes_in_padding_free_chunks_that_join_into_the_file(
    apps_client: Client, emulator: Emulator
) -> None:
    record = await completed_job(apps_client)
    # A saved video longer than two chunks (the tool sends bytes; it does not decode them).
    data = os.urandom(2 * CHUNK_BYTES + 1234)
    await anyio.Path(record["local_path"]).write_bytes(data)
    parts: list[str] = []
    offset = 0
    while True:
        result = await chunk(apps_client, record["job_id"], offset)
        assert not result.is_error, text_of(result)
        # One result stays under the 1 MB that some hosts accept.
        assert len(result.model_dump_json(by_alias=True)) < 1_000_000
        piece = structured(result)
        assert piece["offset"] == offset
        assert piece["total"] == len(data)
        assert piece["count"] <= 512 * 1024
        assert len(base64.b64decode(piece["b64"])) == piece["count"]
        assert piece["b64"][:64] not in text_of(result)  # the bytes travel once, not in the text too
        parts.append(piece["b64"])
        offset += piece["count"]
        if not piece["has_more"]:
            break
        assert piece["count"] == CHUNK_BYTES
        assert CHUNK_BYTES % 3 == 0
        assert "=" not in piece["b64"]
    assert len(parts) == 3
    # The pieces join as text into one base64 string, as the player builds its data: URI.
    assert base64.b64decode("".join(parts), validate=True) == data
    end = structured(await chunk(apps_client, record["job_id"], len(data)))
    assert (end["count"], end["has_more"], end["b64"]) == (0, False, "")
    default = structured(await chunk(apps_client, record["job_id"]))
    assert default["offset"] == 0
    assert default["count"] == CHUNK_BYTES


async def test_the_chunk_tool_refuses_bad_offsets_unknown_jobs_and_jobs_without_a_video(
    apps_client: Client, emulator: Emulator
) -> None:
    record = await completed_job(apps_client)
    size = (await anyio.Path(record["local_path"]).stat()).st_size
    past = await chunk(apps_client, record["job_id"], size + 1)
    assert past.is_error
    assert f"past the end of job {record['job_id']}'s video ({size} bytes)" in text_of(past)
    negative = await chunk(apps_client, record["job_id"], -3)
    assert negative.is_error
    assert "offset" in text_of(negative)
    empty = await chunk(apps_client, "")
    assert empty.is_error
    assert "job_id" in text_of(empty)
    unknown = await chunk(apps_client, "wan22_i2v_480p_ultra_fast-000000000000")
    assert unknown.is_error
    assert "No job has the id" in text_of(unknown)

    emulator.hold = True
    running = structured(
        await apps_client.call_tool(
            f"{MODEL}_generate_video", minimal_arguments(MODEL, prompt="another take", wait_seconds=0)
        )
    )
    refused = await chunk(apps_client, running["job_id"])
    assert refused.is_error
    assert "has no saved video" in text_of(refused)
    emulator.release()

    await anyio.Path(record["local_path"]).unlink()
    gone = await chunk(apps_client, record["job_id"])
    assert gone.is_error
    assert "cannot be read" in text_of(gone)


@pytest.mark.parametrize("mode", ERAS)
async def test_apps_clients_get_the_players_facts_and_others_exactly_the_usual_result(
    tmp_path: Path, emulator: Emulator, mode: str
) -> None:
    # Polls 2 s apart: the player is told to ask again just after the next one (not its default 3 s).
    settings = make_settings(tmp_path, poll=PollPolicy(interval=2, retry_base=0, retry_cap=0, heartbeat=0.2))
    server = build_server(settings, transport=emulator.transport())
    emulator.hold = True
    async with (
        Client(server, mode=mode, extensions=[APPS_CLIENT]) as apps,
        Client(server, mode=mode) as plain,
    ):
        started = structured(
            await apps.call_tool(f"{MODEL}_generate_video", minimal_arguments(MODEL, wait_seconds=0))
        )
        facts = started["player"]
        assert 0 <= facts["progress"] < 1
        assert 0 < facts["poll_after_seconds"] <= 2.3
        assert "confirm_above_usd" not in facts
        running = structured(
            await plain.call_tool("get_result", {"job_id": started["job_id"], "wait_seconds": 0})
        )
        assert "player" not in running

        emulator.release()
        emulator.hold = False
        job_id = started["job_id"]
        for_apps = await apps.call_tool("get_result", {"job_id": job_id, "wait_seconds": 20})
        for_others = await plain.call_tool("get_result", {"job_id": job_id, "wait_seconds": 20})
    seen_by_apps = structured(for_apps)
    assert seen_by_apps["status"] == "completed"
    assert seen_by_apps.pop("player") == {
        "progress": 1.0,
        "video_bytes": (await anyio.Path(seen_by_apps["local_path"]).stat()).st_size,
    }
    assert seen_by_apps == structured(for_others)
    assert for_apps.content == for_others.content
    assert for_apps.is_error == for_others.is_error


async def test_the_player_is_told_when_the_server_asks_for_confirmation(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, spend=SpendPolicy(confirm_above_usd=0.02))
    server = build_server(settings, transport=emulator.transport())
    async with Client(server, extensions=[APPS_CLIENT]) as apps:
        arguments = minimal_arguments(MODEL, confirm_cost_usd=0.05)
        record = structured(await apps.call_tool(f"{MODEL}_generate_video", arguments))
    assert record["player"]["confirm_above_usd"] == 0.02
