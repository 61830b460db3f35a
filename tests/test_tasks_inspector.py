"""Tasks through a client nobody here wrote: the MCP Inspector CLI on the 2026-07-28 setting
declares ``io.modelcontextprotocol/tasks`` and follows a task with ``tasks/get`` to its result.

The server runs in this process under uvicorn on loopback (so the test can hold the emulator's
job and cancel it mid-flight); the Inspector is the subprocess.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from server.app import build_server
from server.jobs.store import Job, SqliteStore
from server.sandbox import Emulator
from server.sandbox.state import RecordedCall
from server.settings import Settings
from tests.conftest import FAST_POLL, make_settings
from tests.mcp_helpers import minimal_arguments, serve_asgi
from tests.test_inspector import Inspector, inspector  # noqa: F401 - the fixture
from tests.test_tasks import Raw

pytestmark = [pytest.mark.inspector, pytest.mark.anyio]

MODEL = "wan22_i2v_480p_ultra_fast"
GENERATE = f"{MODEL}_generate_video"


def journal(settings: Settings) -> list[Job]:
    store = SqliteStore(settings.database_path)
    try:
        return store.select_now(limit=20)
    finally:
        store.close_now()


@asynccontextmanager
async def _serve(settings: Settings) -> AsyncIterator[str]:
    async with serve_asgi(build_server(settings).streamable_http_app()) as base:
        yield f"{base}/mcp"


async def test_inspector_completes_a_generate_call_through_a_task(
    inspector: Inspector,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    emulator: Emulator,
    loopback_emulator: str,
) -> None:
    settings = make_settings(tmp_path / "home", base_url=loopback_emulator)
    async with _serve(settings) as url:
        result = await inspector.tool([url], GENERATE, minimal_arguments(MODEL), era="modern")
    record = result["structuredContent"]
    assert record["status"] == "completed"
    assert record["video_url"].startswith(f"{loopback_emulator}/sandbox/files/")
    links = [c for c in result["content"] if c["type"] == "resource_link"]
    assert links[0]["uri"] == f"wan-video://jobs/{record['job_id']}"
    [row] = journal(settings)
    assert row.id == record["job_id"]
    assert row.task_id is not None
    assert len(emulator.submissions()) == 1


async def test_inspector_follows_a_task_cancelled_after_the_submit_to_its_billed_video(
    inspector: Inspector,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    emulator: Emulator,
    loopback_emulator: str,
) -> None:
    emulator.hold = True
    polled = anyio.Event()

    def on_call(call: RecordedCall) -> None:
        if call.route == "ws.result":  # the provider has the job: the runner polls it
            polled.set()

    emulator.watchers.append(on_call)
    settings = make_settings(
        tmp_path / "home", base_url=loopback_emulator, poll=FAST_POLL.model_copy(update={"interval": 0.02})
    )
    answer: dict[str, Any] = {}

    async def follow(url: str) -> None:
        answer.update(await inspector.tool([url], GENERATE, minimal_arguments(MODEL), era="modern"))

    async with (
        _serve(settings) as url,
        anyio.create_task_group() as group,
        httpx.AsyncClient(timeout=30) as http,
    ):
        group.start_soon(follow, url)
        with anyio.fail_after(60):
            await polled.wait()
        [row] = journal(settings)
        assert row.task_id is not None
        _, ack = await Raw(http, url).call("tasks/cancel", {"taskId": row.task_id}, name=row.task_id)
        assert ack["result"]["resultType"] == "complete"
        emulator.release()
    record = answer["structuredContent"]
    assert record["status"] == "completed"
    assert record["video_url"]
    assert await anyio.Path(record["local_path"]).is_file()
    assert "billed" in record["cancel_note"]
    assert "billed as usual and its video is still saved" in answer["content"][0]["text"]
    assert len(emulator.submissions()) == 1
