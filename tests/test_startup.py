"""Start-up stays cheap: image, video and emulator code load on first use, not at start, the
HTTP transport (its TLS context) is made on the first provider request, and the core (journal,
HTTP client, pollers, and the modules behind them) opens after the first answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server.app import build_server
from server.core_handle import OPEN_AFTER_SECONDS, CoreHandle
from server.errors import ConfigError, WanMcpError
from server.providers.deferred import DeferredTransport
from server.settings import Settings
from tests.mcp_helpers import ERAS, serve_asgi, text_of

PROBE = """
import sys
from server.app import build_server
from server.settings import Settings
build_server(Settings(home=sys.argv[1]))
print(",".join(m for m in ("PIL", "av", "server.sandbox") if m in sys.modules))
"""


def test_building_the_server_loads_no_image_video_or_emulator_code() -> None:
    command = [sys.executable, "-c", PROBE, "/nonexistent-home"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


# A client's opening exchange in both eras, then one call that needs the journal. The core would
# open on its own after OPEN_AFTER_SECONDS; the probe pushes that out of reach, so what it sees
# does not depend on the machine's speed.
SERVING_PROBE = """
import sys

import anyio
from mcp import Client

import server.core_handle
from server.app import build_server
from server.settings import Settings

HEAVY = ("httpx", "sqlite3", "server.core", "server.jobs.store", "server.media", "server.providers",
         "PIL", "av", "server.sandbox")
server.core_handle.OPEN_AFTER_SECONDS = 3600


def loaded():
    return ",".join(m for m in HEAVY if m in sys.modules)


async def main():
    for mode in ("legacy", "auto"):
        async with Client(build_server(Settings(home=sys.argv[1])), mode=mode) as client:
            await client.list_tools()
            await client.list_prompts()
            await client.list_resource_templates()
            print(loaded())
    async with Client(build_server(Settings(home=sys.argv[1]))) as client:
        await client.call_tool("list_jobs", {})
        print(loaded())

anyio.run(main)
"""


def test_the_first_answers_load_neither_the_core_nor_httpx(tmp_path: Path) -> None:
    command = [sys.executable, "-c", SERVING_PROBE, str(tmp_path / "home")]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    *eras, after_a_call = out.stdout.splitlines()
    assert eras == ["", ""]
    # The call opened the core: its journal and its HTTP client, not the media or emulator code.
    assert after_a_call == "httpx,sqlite3,server.core,server.jobs.store,server.media,server.providers"
    assert (tmp_path / "home").is_dir()


@asynccontextmanager
async def opened(log: list[str], is_open: anyio.Event | None = None) -> AsyncIterator[Any]:
    log.append("open")
    if is_open is not None:
        is_open.set()
    try:
        yield "core"
    finally:
        log.append("close")


@pytest.mark.anyio
async def test_the_core_opens_on_its_own_after_a_moment_and_closes_when_the_server_stops() -> None:
    log: list[str] = []
    handle, is_open = CoreHandle(), anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            started = anyio.current_time()
            tg.start_soon(handle.run, lambda: opened(log, is_open))
            await anyio.wait_all_tasks_blocked()
            assert handle.core is None
            await is_open.wait()  # nothing asked for it: it opened by itself
            assert anyio.current_time() - started >= OPEN_AFTER_SECONDS * 0.9
            assert handle.core == "core"
            handle.close()
    assert log == ["open", "close"]
    assert handle.error is None


@pytest.mark.anyio
async def test_a_call_opens_the_core_at_once() -> None:
    log: list[str] = []
    handle = CoreHandle()
    with anyio.fail_after(OPEN_AFTER_SECONDS * 0.8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, lambda: opened(log))
            assert await handle.get() == "core"
            handle.close()
    assert log == ["open", "close"]


@pytest.mark.anyio
async def test_a_server_stopped_before_anything_needed_the_core_never_opens_it() -> None:
    log: list[str] = []
    handle = CoreHandle()
    with anyio.fail_after(OPEN_AFTER_SECONDS * 0.8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, lambda: opened(log))
            await anyio.wait_all_tasks_blocked()
            handle.close()
    assert log == []
    with pytest.raises(WanMcpError, match="is stopping"):
        await handle.get()


@pytest.mark.anyio
async def test_a_core_that_cannot_open_is_logged_and_refuses_every_call_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @asynccontextmanager
    async def unreachable() -> AsyncIterator[Any]:
        raise ConfigError("Could not connect to the PostgreSQL journal. Check WAN_MCP_DATABASE_URL.")
        yield  # pragma: no cover

    handle = CoreHandle()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, unreachable)
            for _ in range(2):  # the server keeps answering, and each call hears why
                with pytest.raises(WanMcpError, match=r"could not start: Could not connect .* restart"):
                    await handle.get()
            handle.close()
    assert isinstance(handle.error, ConfigError)
    assert "could not start: Could not connect to the PostgreSQL journal" in caplog.text


@pytest.mark.anyio
async def test_a_failure_that_comes_through_task_groups_is_told_by_itself(tmp_path: Path) -> None:
    @asynccontextmanager
    async def blocked() -> AsyncIterator[Any]:
        async with anyio.create_task_group():  # as the sandbox's emulator and the pollers start
            (tmp_path / "home").mkdir()
            (tmp_path / "home").mkdir()
        yield  # pragma: no cover

    handle = CoreHandle()
    message = ""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, blocked)
            with pytest.raises(WanMcpError) as refused:
                await handle.get()
            message = str(refused.value)
            handle.close()
    assert isinstance(handle.error, FileExistsError)
    assert f"File exists: {tmp_path / 'home'}. Check that WAN_MCP_HOME" in message
    assert "TaskGroup" not in message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_server_whose_journal_cannot_open_still_lists_and_refuses_calls_with_the_reason(
    tmp_path: Path, mode: str
) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the data folder should be")
    with anyio.fail_after(30):
        async with Client(build_server(Settings(home=home)), mode=mode) as client:
            assert len((await client.list_tools()).tools) == 14
            refused = await client.call_tool("list_jobs", {})
            with pytest.raises(MCPError, match="could not start"):
                await client.read_resource("wan-video://jobs")
            assert (await client.list_prompts()).prompts
    assert refused.is_error
    assert "The server could not start: " in text_of(refused)
    assert "File exists" in text_of(refused)


@pytest.mark.anyio
async def test_a_running_core_that_fails_stops_the_server() -> None:
    @asynccontextmanager
    async def crashing() -> AsyncIterator[Any]:
        yield "core"
        raise RuntimeError("a poller broke")

    handle = CoreHandle()

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, crashing)
            assert await handle.get() == "core"
            handle.close()
            await anyio.sleep_forever()  # the server's loop: cancelled by the failure

    with anyio.fail_after(10), pytest.raises(ExceptionGroup) as caught:
        await serve()
    assert caught.group_contains(RuntimeError, match="a poller broke")
    assert handle.error is None


@pytest.mark.anyio
async def test_the_http_transport_is_made_on_the_first_request_not_at_start() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"pong"})

    transport = DeferredTransport()
    async with serve_asgi(app) as base, httpx.AsyncClient(transport=transport) as client:
        assert not transport.started
        with anyio.fail_after(10):
            answer = await client.get(f"{base}/ping")
        assert (answer.status_code, answer.text) == (200, "pong")
        assert transport.started
