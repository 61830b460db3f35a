"""Bugs the reliability scenarios found, each as the smallest test that shows it (all fixed)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from bench.common import (
    CAT_URL,
    bench_settings,
    is_crash,
    journal,
    new_emulator,
    prompt_of,
    record_of,
    stdio_params,
    stdio_session,
    text_of,
)
from server.app import build_server
from server.sandbox import Fault, RecordedCall, serve_emulator

FAST = "wan22_i2v_480p_ultra_fast"


@pytest.mark.anyio
async def test_a_lost_submit_never_adopts_the_provider_job_of_another_request(tmp_path: Path) -> None:
    emulator = new_emulator()
    settings = bench_settings(tmp_path / "home")
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        emulator.inject("ws.submit", Fault.drop())  # created at the provider, answer lost
        lost = record_of(await client.call_tool(f"{FAST}_generate_video", {"image": CAT_URL, "prompt": "A"}))
        emulator.inject("ws.submit", Fault.status(502))  # never created
        never = record_of(await client.call_tool(f"{FAST}_generate_video", {"image": CAT_URL, "prompt": "B"}))
        assert lost is not None
        assert never is not None
        assert (lost["status"], never["status"]) == ("unconfirmed", "unconfirmed")
        with anyio.fail_after(20):
            for job in (never, lost):
                await client.call_tool("get_result", {"job_id": job["job_id"], "wait_seconds": 10})
    assert len(emulator.submissions()) == 1
    made_for = {job.id: prompt_of(job.body) for job in emulator.submissions()}
    held = {
        row.params["prompt"]: made_for.get(row.provider_job_id or "")
        for row in journal(settings.database_path)
    }
    # B must not hold A's video (and A must not end "never created" while the provider has it).
    assert held["B"] in (None, "B")


@pytest.mark.anyio
async def test_a_lost_submit_never_adopts_the_job_of_a_submit_still_in_flight(tmp_path: Path) -> None:
    emulator = new_emulator()
    settings = bench_settings(tmp_path / "home")
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        emulator.inject("ws.submit", Fault.status(502))  # A: never created, left unconfirmed
        lost = record_of(await client.call_tool(f"{FAST}_generate_video", {"image": CAT_URL, "prompt": "A"}))
        assert lost is not None
        assert lost["status"] == "unconfirmed"
        reached = anyio.Event()
        emulator.watchers.append(lambda call: reached.set() if call.route == "ws.submit" else None)
        # B: the provider creates the job at once; its answer takes two seconds to arrive.
        emulator.inject("ws.submit", Fault.slow(2, chunks=2))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                arguments = {"image": CAT_URL, "prompt": "B", "wait_seconds": 0}
                group.start_soon(client.call_tool, f"{FAST}_generate_video", arguments)
                await reached.wait()
                assert len(emulator.submissions()) == 1
                await client.call_tool("get_result", {"job_id": lost["job_id"], "wait_seconds": 0})
    made_for = {job.id: prompt_of(job.body) for job in emulator.submissions()}
    rows = journal(settings.database_path)
    held = {row.params["prompt"]: made_for.get(row.provider_job_id or "") for row in rows}
    assert held == {"A": None, "B": "B"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (f"{FAST}_estimate_cost", {"duration": None}),
        ("wan22_i2v_estimate_cost", {"resolution": None}),
        ("wan22_i2v_flash_estimate_cost", {"resolution": None}),
        (f"{FAST}_generate_video", {"image": CAT_URL, "prompt": "a cat", "duration": None}),
        ("wan21_i2v_480p_generate_video", {"image": CAT_URL, "prompt": "a cat", "duration": None}),
    ],
)
async def test_null_for_a_priced_parameter_is_not_a_crash(
    tmp_path: Path, tool: str, arguments: dict[str, Any]
) -> None:
    emulator = new_emulator()
    settings = bench_settings(tmp_path / "home", default_wait_seconds=0.0)
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        result = await client.call_tool(tool, arguments)
    text = text_of(result)
    assert not is_crash(text), text
    if result.is_error:
        # Refused, then: by name, and before anything was sent.
        assert "'duration'" in text or "'resolution'" in text
        assert emulator.calls == []


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["{home}/cat\x00.png", "file://{home}/cat%00.png"])
async def test_a_nul_byte_in_an_image_path_is_refused_not_a_crash(tmp_path: Path, form: str) -> None:
    emulator = new_emulator()
    home = tmp_path / "home"
    async with Client(build_server(bench_settings(home), transport=emulator.transport())) as client:
        arguments = {"image": form.format(home=home), "prompt": "a cat"}
        result = await client.call_tool("wan22_i2v_flash_generate_video", arguments)
    assert result.is_error
    assert not is_crash(text_of(result)), text_of(result)
    assert "Nothing was sent" in text_of(result)
    assert emulator.calls == []


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_download_killed_midway_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    emulator = new_emulator()
    downloading = anyio.Event()

    def watch(call: RecordedCall) -> None:
        if call.route == "file":
            downloading.set()

    emulator.watchers.append(watch)
    emulator.inject("file", Fault.slow(30, chunks=30))
    with anyio.fail_after(60):
        async with serve_emulator(emulator) as base_url:
            params = stdio_params(home, base_url)
            async with stdio_session(params) as (client, process):
                started = record_of(
                    await client.call_tool(
                        f"{FAST}_generate_video", {"image": CAT_URL, "prompt": "a cat", "wait_seconds": 0}
                    )
                )
                await downloading.wait()
                os.kill(process.pid, signal.SIGKILL)
            assert started is not None
            assert any(p.name.endswith(".part") for p in (home / "videos").iterdir())
            async with stdio_session(params) as (client, _):
                done = record_of(
                    await client.call_tool("get_result", {"job_id": started["job_id"], "wait_seconds": 30})
                )
    assert done is not None
    assert done["status"] == "completed"
    assert sorted(p.name.split(".", 1)[1] for p in (home / "videos").iterdir()) == [
        "jpg",
        "json",
        "mp4",
        "sheet.jpg",
    ]


@pytest.mark.anyio
async def test_a_poster_or_sidecar_cut_short_by_a_kill_is_swept_on_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    videos = home / "videos"
    videos.mkdir(parents=True)
    # What _write_atomic leaves when its process dies between creating the temp file and the rename:
    # the writer's pid is in the name, and that process is gone.
    gone = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    fd, name = tempfile.mkstemp(
        prefix=f".2026-11-21_120000_wan22_i2v-0123456789ab.{int(gone.stdout.decode())}~",
        suffix=".part",
        dir=videos,
    )
    os.close(fd)
    emulator = new_emulator()
    async with Client(build_server(bench_settings(home), transport=emulator.transport())) as client:
        assert not (await client.call_tool("list_jobs", {})).is_error
    assert not os.path.exists(name)  # noqa: ASYNC240 - one stat after the server stopped
