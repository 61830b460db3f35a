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

from server.core_handle import OPEN_AFTER_SECONDS, CoreHandle
from server.errors import WanMcpError
from server.providers.deferred import DeferredTransport
from tests.mcp_helpers import serve_asgi

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
            tg.start_soon(handle.run, lambda: opened(log, is_open), tg.cancel_scope.cancel)
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
            tg.start_soon(handle.run, lambda: opened(log), tg.cancel_scope.cancel)
            assert await handle.get() == "core"
            handle.close()
    assert log == ["open", "close"]


@pytest.mark.anyio
async def test_a_server_stopped_before_anything_needed_the_core_never_opens_it() -> None:
    log: list[str] = []
    handle = CoreHandle()
    with anyio.fail_after(OPEN_AFTER_SECONDS * 0.8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, lambda: opened(log), tg.cancel_scope.cancel)
            await anyio.wait_all_tasks_blocked()
            handle.close()
    assert log == []
    with pytest.raises(WanMcpError, match="it is stopping"):
        await handle.get()


@pytest.mark.anyio
async def test_a_core_that_cannot_open_stops_the_server_with_its_error() -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[Any]:
        raise WanMcpError("WAN_MCP_DATABASE_URL: the journal cannot be reached")
        yield  # pragma: no cover

    handle = CoreHandle()
    serving = anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.run, broken, tg.cancel_scope.cancel)
            serving.set()
            with pytest.raises(WanMcpError, match="could not start: WAN_MCP_DATABASE_URL"):
                await handle.get()
            await anyio.sleep_forever()  # the server's loop: cancelled by the failure
    assert serving.is_set()
    assert isinstance(handle.error, WanMcpError)


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
