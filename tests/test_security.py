"""Security: the HTTP transport's door, and secrets that never leak anywhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from server.app import build_server
from server.errors import ConfigError
from server.http import build_http_app, is_loopback
from server.sandbox import Emulator, Fault
from server.settings import HttpPolicy, Settings
from tests.conftest import make_settings
from tests.contract import PARAMS
from tests.mcp_helpers import minimal_arguments, serve_asgi

CANARY_WS = "canary-ws-7f3e9a1b2c4d5e6f"
CANARY_VX = "canary-vx-0a9b8c7d6e5f4a3b"
TOKEN = "http-token-5b7e1c9d3f2a4e6b8d0c"


def test_loopback_addresses_are_recognised() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.10")


def test_a_non_loopback_bind_without_a_token_is_refused_at_start(settings: Settings) -> None:
    server = build_server(settings)
    with pytest.raises(ConfigError, match="WAN_MCP_HTTP_TOKEN"):
        build_http_app(server, HttpPolicy(), "0.0.0.0")
    with pytest.raises(ConfigError, match="bearer token"):
        build_http_app(server, HttpPolicy(), "192.168.1.10")
    build_http_app(server, HttpPolicy(token=SecretStr(TOKEN)), "0.0.0.0")


@pytest.mark.anyio
async def test_with_a_token_requests_without_it_get_401_and_with_it_work(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, http=HttpPolicy(token=SecretStr(TOKEN)))
    app = build_http_app(build_server(settings, transport=emulator.transport()), settings.http, "127.0.0.1")
    async with serve_asgi(app) as base:
        async with httpx.AsyncClient() as raw:
            bare = await raw.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            wrong = await raw.post(
                f"{base}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"Authorization": "Bearer nope"},
            )
        assert bare.status_code == 401
        assert wrong.status_code == 401
        assert TOKEN not in bare.text
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as authed,
            Client(streamable_http_client(f"{base}/mcp", http_client=authed)) as client,
        ):
            tools = (await client.list_tools()).tools
            assert any(t.name == "get_result" for t in tools)


@pytest.mark.anyio
async def test_a_foreign_host_header_is_rejected(settings: Settings) -> None:
    app = build_http_app(build_server(settings), settings.http, "127.0.0.1")
    async with serve_asgi(app) as base, httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{base}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Host": "evil.example", "Accept": "application/json, text/event-stream"},
        )
    assert response.status_code == 421


@pytest.mark.anyio
async def test_allowed_hosts_are_configurable(settings: Settings) -> None:
    policy = HttpPolicy(token=SecretStr(TOKEN), allowed_hosts=("video.example.com",))
    app = build_http_app(build_server(settings), policy, "0.0.0.0")
    async with (
        serve_asgi(app) as base,
        httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as raw,
    ):
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        accept = {"Accept": "application/json, text/event-stream"}
        foreign = await raw.post(f"{base}/mcp", json=ping, headers={"Host": "evil.example", **accept})
        pinned = await raw.post(f"{base}/mcp", json=ping, headers={"Host": "video.example.com", **accept})
    assert foreign.status_code == 421
    assert pinned.status_code != 421


def _every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.anyio
async def test_a_canary_key_never_appears_in_results_logs_journal_or_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = Emulator(wavespeed_key=CANARY_WS, vtrix_key=CANARY_VX)
    emulator.render_scale = 0.25
    emulator.fps = 8
    home = tmp_path / "home"
    settings = make_settings(home, wavespeed_api_key=SecretStr(CANARY_WS), vtrix_api_key=SecretStr(CANARY_VX))
    seen: list[str] = []

    async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(tool, arguments)
        seen.append(result.model_dump_json())
        return dict(result.structured_content or {})

    with anyio.fail_after(60):
        async with Client(build_server(settings, transport=emulator.transport())) as client:
            seen.append((await client.list_tools()).model_dump_json())
            for slug in PARAMS:
                await call(client, f"{slug}_estimate_cost", {})
                record = await call(client, f"{slug}_generate_video", minimal_arguments(slug))
                await call(client, "get_result", {"job_id": record["job_id"]})
                seen.append(
                    (await client.read_resource(f"wan-video://jobs/{record['job_id']}")).model_dump_json()
                )
            await call(client, "list_jobs", {})
            seen.append((await client.read_resource("wan-video://jobs")).model_dump_json())
            await call(client, "wan22_i2v_generate_video", {**minimal_arguments("w"), "duration": 7})
            await call(client, "get_result", {"job_id": "wan22_i2v-000000000000"})
            emulator.inject(
                "ws.submit", Fault.status(401, body={"code": 401, "message": f"bad key {CANARY_WS}"})
            )
            await call(client, "wan22_i2v_generate_video", {**minimal_arguments("w"), "prompt": "401 echo"})
            emulator.inject(
                "vx.submit", Fault.status(403, body={"message": f"key {CANARY_VX} has no balance"})
            )
            await call(client, "wan22_i2v_flash_generate_video", {**minimal_arguments("f"), "prompt": "403"})
            emulator.fail_next_job(f"failed while using {CANARY_WS}")
            await call(client, "wan22_i2v_generate_video", {**minimal_arguments("w"), "prompt": "fails"})
            emulator.inject(
                "ws.result", Fault.status(503, body={"message": f"{CANARY_WS} overloaded"}), times=2
            )
            emulator.inject("ws.submit", Fault.status(429, retry_after=0), times=5)
            await call(client, "wan22_i2v_generate_video", {**minimal_arguments("w"), "prompt": "429s"})
            emulator.inject("ws.submit", Fault.drop())
            lost = await call(
                client, "wan22_i2v_generate_video", {**minimal_arguments("w"), "prompt": "lost"}
            )
            await call(client, "get_result", {"job_id": lost["job_id"], "wait_seconds": 5})
            emulator.inject("ws.submit", Fault.status(502, body={"message": f"upstream said {CANARY_WS}"}))
            await call(client, "wan22_i2v_generate_video", {**minimal_arguments("w"), "prompt": "502"})
        wrong = make_settings(
            home, wavespeed_api_key=SecretStr(CANARY_WS + "-x"), vtrix_api_key=SecretStr(CANARY_VX + "-x")
        )
        async with Client(build_server(wrong, transport=emulator.transport())) as client:
            for slug in ("wan22_i2v", "wan22_i2v_flash"):
                await call(
                    client, f"{slug}_generate_video", {**minimal_arguments(slug), "prompt": "wrong key"}
                )
    assert len(seen) > 30
    assert sum('"status":"completed"' in s for s in seen) >= len(PARAMS)
    for text in seen:
        assert CANARY_WS not in text
        assert CANARY_VX not in text
    for record in caplog.records:
        line = record.getMessage() + str(record.args or "") + str(record.exc_info or "")
        assert CANARY_WS not in line
        assert CANARY_VX not in line
    files = _every_file(home)
    assert any(p.name.startswith("jobs.sqlite3") for p in files)
    for path in files:
        data = path.read_bytes()
        assert CANARY_WS.encode() not in data, path
        assert CANARY_VX.encode() not in data, path
    assert any(c.headers.get("authorization") == f"Bearer {CANARY_WS}" for c in emulator.calls)


def test_signed_query_strings_are_cut_from_logs() -> None:
    from server.providers.http import safe_url, scrub

    signed = "https://cdn.example.com/out/a.mp4?Expires=1&Signature=abc123secret&Key-Pair-Id=K"
    assert safe_url(signed) == "https://cdn.example.com/out/a.mp4"
    assert "abc123secret" not in scrub(f"could not fetch {signed}")
