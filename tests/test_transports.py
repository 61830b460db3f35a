"""The real server process and transports: stdio subprocess and Streamable HTTP on loopback, in
both protocol eras, against the emulator on loopback (reached only through *_BASE_URL)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.sandbox import Emulator
from tests.conftest import make_settings
from tests.contract import PARAMS, TOOL_NAMES
from tests.mcp_helpers import (
    ERAS,
    ProgressLog,
    minimal_arguments,
    serve_asgi,
    stdio_server,
    structured,
    text_of,
)


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_stdio_lists_the_tools_and_generates_with_every_model(
    era: str, tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    params = stdio_server(tmp_path / "home", loopback_emulator)
    with anyio.fail_after(60):
        async with Client(params, mode=era) as client:  # type: ignore[arg-type]
            tools = (await client.list_tools()).tools
            assert sorted(t.name for t in tools) == TOOL_NAMES
            flash = next(t for t in tools if t.name == "wan22_i2v_flash_generate_video")
            assert flash.input_schema["properties"]["prompt"]["maxLength"] == 800
            for slug in PARAMS:
                progress = ProgressLog()
                result = await client.call_tool(
                    f"{slug}_generate_video", minimal_arguments(slug), progress_callback=progress
                )
                record = structured(result)
                assert record["status"] == "completed", text_of(result)
                assert record["video_url"].startswith(f"{loopback_emulator}/sandbox/files/")
                assert progress.messages
                assert progress.messages[-1] == "done"
                again = structured(await client.call_tool("get_result", {"job_id": record["job_id"]}))
                assert again["video_url"] == record["video_url"]
    assert len(emulator.submissions()) == len(PARAMS)


@pytest.mark.anyio
async def test_stdio_server_stopped_mid_job_finishes_it_after_restart(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    params = stdio_server(tmp_path / "home", loopback_emulator)
    emulator.hold = True
    with anyio.fail_after(60):
        async with Client(params) as first:
            record = structured(
                await first.call_tool(
                    "wan22_i2v_generate_video", {**minimal_arguments("wan22_i2v"), "wait_seconds": 0}
                )
            )
            assert record["status"] in ("queued", "running")
        emulator.release()
        async with Client(params, mode="legacy") as second:
            done = structured(
                await second.call_tool("get_result", {"job_id": record["job_id"], "wait_seconds": 30})
            )
    assert done["status"] == "completed"
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_streamable_http_generates_with_progress(
    era: str, tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    settings = make_settings(tmp_path / "home", base_url=loopback_emulator)
    app = build_server(settings).streamable_http_app()
    with anyio.fail_after(30):
        async with serve_asgi(app) as base, Client(f"{base}/mcp", mode=era) as client:  # type: ignore[arg-type]
            assert sorted(t.name for t in (await client.list_tools()).tools) == TOOL_NAMES
            progress = ProgressLog()
            result = await client.call_tool(
                "wan22_i2v_flash_generate_video", minimal_arguments("f"), progress_callback=progress
            )
            assert structured(result)["status"] == "completed", text_of(result)
            assert progress.messages[-1] == "done"
