"""stitch_videos through a real MCP client against the emulator: clips of different sizes joined
into one MP4 whose frames and duration are the sum (decoded here with PyAV), the same-size copy,
the crossfade, the saved files and resource, and the refusals."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from mcp import Client
from mcp.types import BlobResourceContents, CallToolResult, ImageContent, ResourceLink

from server.app import build_server
from server.sandbox import Emulator
from server.settings import Settings
from tests.mcp_helpers import ERAS, minimal_arguments, structured, text_of

FPS = 8  # the emulator fixture's frame rate


@pytest.fixture(params=ERAS)
async def client(
    request: pytest.FixtureRequest, settings: Settings, emulator: Emulator
) -> AsyncIterator[Client]:
    async with Client(build_server(settings, transport=emulator.transport()), mode=request.param) as c:
        yield c


async def job(client: Client, slug: str, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(20):
        result = await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug, **arguments))
    record = structured(result)
    assert record["status"] == "completed", text_of(result)
    return record


async def stitch(client: Client, job_ids: list[str], **arguments: Any) -> CallToolResult:
    with anyio.fail_after(60):
        return await client.call_tool("stitch_videos", {"job_ids": job_ids, **arguments})


def decoded(path: str | Path) -> tuple[int, float, tuple[int, int]]:
    """Frames, duration (s) and size of an MP4, by decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.duration is not None
        assert stream.time_base is not None
        return frames, float(stream.duration * stream.time_base), (stream.width, stream.height)


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def modified(path: str | Path) -> int:
    return Path(path).stat().st_mtime_ns


def sending(emulator: Emulator) -> int:
    return sum(call.route.endswith("submit") or "upload" in call.route for call in emulator.calls)


@pytest.mark.anyio
async def test_three_jobs_of_different_sizes_become_one_mp4_of_their_summed_length(
    client: Client, emulator: Emulator, settings: Settings
) -> None:
    parts = [
        await job(client, "wan22_i2v_480p_ultra_fast"),  # 208x120
        await job(client, "wan21_i2v_480p", size="480*832"),  # 120x208
        await job(client, "wan22_i2v", resolution="720p"),  # 320x180
    ]
    sizes = {decoded(p["local_path"])[2] for p in parts}
    assert len(sizes) == 3
    expected_frames = sum(decoded(p["local_path"])[0] for p in parts)
    expected_seconds = sum(decoded(p["local_path"])[1] for p in parts)
    calls = len(emulator.calls)
    result = await stitch(client, [p["job_id"] for p in parts])
    record = structured(result)
    assert not result.is_error, text_of(result)
    assert "nothing was charged" in text_of(result)
    assert record["cost_usd"] == 0
    assert record["mode"] == "re-encoded"
    assert len(emulator.calls) == calls  # local work only
    video = Path(record["local_path"])
    assert video.parent == settings.videos_dir
    frames, seconds, size = decoded(video)
    assert frames == expected_frames == 3 * 5 * FPS
    assert seconds == pytest.approx(expected_seconds, abs=1 / FPS)
    assert size == (208, 120)  # the first clip's size; the others letterboxed into it
    assert (record["video"]["frames"], record["video"]["duration_seconds"]) == (frames, pytest.approx(15.0))
    sidecar = json.loads(video.with_suffix(".json").read_text())
    assert [p["job_id"] for p in sidecar["parts"]] == [p["job_id"] for p in parts]
    assert [p["file"] for p in sidecar["parts"]] == [Path(p["local_path"]).name for p in parts]
    assert video.with_suffix(".jpg").is_file()
    [link] = [b for b in result.content if isinstance(b, ResourceLink)]
    assert link.uri == record["uri"] == f"wan-video://stitches/{record['stitch_id']}"
    assert link.mime_type == "video/mp4"
    [contents] = (await client.read_resource(link.uri)).contents
    assert isinstance(contents, BlobResourceContents)
    assert base64.b64decode(contents.blob) == read(video)
    assert [b for b in result.content if isinstance(b, ImageContent)]


@pytest.mark.anyio
async def test_clips_that_match_are_copied_and_a_second_ask_reuses_the_file(client: Client) -> None:
    a = await job(client, "wan22_i2v_480p_ultra_fast", prompt="one")
    b = await job(client, "wan22_i2v_480p_ultra_fast", prompt="two")
    first = structured(await stitch(client, [a["job_id"], b["job_id"], a["job_id"]]))
    assert first["mode"] == "copied"
    assert decoded(first["local_path"])[:2] == (3 * 5 * FPS, pytest.approx(15.0, abs=1 / FPS))
    made = modified(first["local_path"])
    again = structured(await stitch(client, [a["job_id"], b["job_id"], a["job_id"]]))
    assert again["reused"] is True
    assert again["local_path"] == first["local_path"]
    assert modified(first["local_path"]) == made


@pytest.mark.anyio
async def test_a_crossfade_overlaps_each_joint(client: Client) -> None:
    a = await job(client, "wan22_i2v_480p_ultra_fast", prompt="one")
    b = await job(client, "wan22_i2v_480p_ultra_fast", prompt="two")
    record = structured(await stitch(client, [a["job_id"], b["job_id"]], crossfade_seconds=0.5))
    assert record["mode"] == "re-encoded"
    frames, seconds, _ = decoded(record["local_path"])
    assert frames == 2 * 5 * FPS - round(0.5 * FPS)
    assert seconds == pytest.approx(10 - 0.5, abs=1 / FPS)


@pytest.mark.anyio
async def test_unknown_unfinished_and_unsaved_jobs_are_refused_and_nothing_is_made(
    client: Client, emulator: Emulator, settings: Settings
) -> None:
    done = await job(client, "wan22_i2v_480p_ultra_fast")
    gone = await job(client, "wan22_i2v_480p_ultra_fast", prompt="deleted later")
    Path(gone["local_path"]).unlink()  # noqa: ASYNC240 - a file gone from under the server
    emulator.hold = True
    with anyio.fail_after(20):
        running = structured(
            await client.call_tool(
                "wan22_i2v_480p_ultra_fast_generate_video",
                minimal_arguments("x", prompt="still running", wait_seconds=0),
            )
        )
    before = sending(emulator)
    cases = [
        (["wan22_i2v-000000000000"], "knows no job 'wan22_i2v-000000000000'"),
        ([running["job_id"]], "not completed, so its video is not saved yet"),
        ([gone["job_id"]], "its video is not saved on this machine"),
    ]
    for ids, expected in cases:
        result = await stitch(client, [done["job_id"], *ids])
        assert result.is_error
        assert expected in text_of(result), text_of(result)
        assert "Nothing was stitched" in text_of(result)
    for arguments, expected in (
        ({"job_ids": [done["job_id"]]}, "2 to 20 jobs"),
        ({"job_ids": [done["job_id"]] * 2, "crossfade_seconds": 3}, "from 0 to 2"),
        ({"job_ids": [done["job_id"]] * 2, "crossfade_seconds": True}, "must be a number"),
    ):
        result = await client.call_tool("stitch_videos", arguments)
        assert result.is_error
        assert expected in text_of(result), text_of(result)
    assert not list(settings.videos_dir.glob("stitch-*"))
    assert not list(settings.videos_dir.glob(".*.part"))
    assert sending(emulator) == before
