"""Our own frames as inputs, through a real MCP client against the emulator: "continue this shot"
on WaveSpeed and on Vtrix (the provider gets that frame's pixels), refusals that send nothing,
the frames as resources, and the contact sheet that stands in for the poster."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents, CallToolResult, ImageContent
from PIL import Image, ImageChops, ImageStat

from server.app import build_server
from server.media.frames import contact_sheet
from server.sandbox import EmuJob, Emulator
from server.settings import Settings
from tests.mcp_helpers import ERAS, minimal_arguments, structured, text_of

WAVESPEED = "wan22_i2v_480p_ultra_fast"
VTRIX = "wan22_i2v_flash"
SENDING = ("ws.submit", "vx.submit", "ws.upload_ticket", "ws.upload_binary", "ws.upload_put")


@pytest.fixture(params=ERAS)
async def client(
    request: pytest.FixtureRequest, settings: Settings, emulator: Emulator
) -> AsyncIterator[Client]:
    async with Client(build_server(settings, transport=emulator.transport()), mode=request.param) as c:
        yield c


async def generate(client: Client, slug: str, **arguments: Any) -> CallToolResult:
    with anyio.fail_after(20):
        return await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug, **arguments))


def frames_of(path: str | Path) -> list[Image.Image]:
    """Every frame of an MP4, decoded here with PyAV (not with the server's code)."""
    with av.open(str(path)) as container:
        return [frame.to_image().convert("RGB") for frame in container.decode(video=0)]


def sent_bytes(emulator: Emulator, job: EmuJob) -> bytes:
    """The image bytes a submit carried: the uploaded file (WaveSpeed) or the data: URI (Vtrix)."""
    inputs = job.body.get("input")
    ref = str(inputs["img_url"]) if isinstance(inputs, dict) else str(job.body["image"])  # pyright: ignore[reportUnknownArgumentType]
    data = emulator.image_bytes(ref)
    assert data is not None, ref
    return data


def sending(emulator: Emulator) -> int:
    return sum(call.route in SENDING for call in emulator.calls)


def difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.mark.anyio
async def test_continue_from_the_last_frame_on_wavespeed_sends_that_frames_pixels(
    client: Client, emulator: Emulator
) -> None:
    first = structured(await generate(client, WAVESPEED))
    uri = f"wan-video://jobs/{first['job_id']}/frames/last"
    assert first["last_frame"] == uri
    result = await generate(client, WAVESPEED, image=uri, prompt="the cat walks on")
    second = structured(result)
    assert second["status"] == "completed", text_of(result)
    assert second["parameters"]["image"] == uri
    [note] = second["notes"]
    assert note.startswith(f"image: the last frame of job {first['job_id']} (frame 39, at 4.875 s")
    [_, job] = emulator.submissions()
    sent = Image.open(io.BytesIO(sent_bytes(emulator, job)))
    assert sent.format == "PNG"
    last = frames_of(first["local_path"])[-1]
    assert sent.convert("RGB").tobytes() == last.tobytes()


@pytest.mark.anyio
async def test_continue_on_vtrix_inlines_that_frames_pixels(client: Client, emulator: Emulator) -> None:
    emulator.render_scale = 0.5  # 640x360: inside Vtrix's 360-2000 px, so nothing needs fixing
    first = structured(await generate(client, VTRIX))
    uri = f"wan-video://jobs/{first['job_id']}/frames/last"
    second = structured(await generate(client, VTRIX, image=uri))
    assert second["status"] == "completed"
    assert f"the last frame of job {first['job_id']}" in second["notes"][0]
    [_, job] = emulator.submissions()
    assert str(job.body["input"]["img_url"]).startswith("data:image/png;base64,")  # type: ignore[index]
    sent = Image.open(io.BytesIO(sent_bytes(emulator, job))).convert("RGB")
    assert sent.tobytes() == frames_of(first["local_path"])[-1].tobytes()


@pytest.mark.anyio
async def test_a_frame_outside_the_models_limits_is_refused_then_fixed_on_request(
    client: Client, emulator: Emulator
) -> None:
    # The emulator's quarter-size video (320x180) is below Vtrix's 360 px minimum.
    first = structured(await generate(client, VTRIX))
    uri = f"wan-video://jobs/{first['job_id']}/frames/at/2.5"
    before = sending(emulator)
    refused = await generate(client, VTRIX, image=uri)
    assert refused.is_error
    assert "outside 360-2000 px a side" in text_of(refused)
    assert "fix_image=true" in text_of(refused)
    assert sending(emulator) == before
    fixed = structured(await generate(client, VTRIX, image=uri, fix_image=True))
    assert fixed["status"] == "completed"
    assert "the frame at 2.5 s" in fixed["notes"][0]
    assert "scaled it from 320x180 to 640x360 px" in fixed["notes"][1]
    sent = Image.open(io.BytesIO(sent_bytes(emulator, emulator.submissions()[-1]))).convert("RGB")
    frames = frames_of(first["local_path"])
    at = frames[20].resize(sent.size)  # 2.5 s at 8 frames a second
    assert difference(sent, at) < 3
    assert difference(sent, at) < difference(sent, frames[0].resize(sent.size))


@pytest.mark.anyio
async def test_a_frame_of_an_unfinished_or_unknown_job_is_refused_and_nothing_is_sent(
    client: Client, emulator: Emulator
) -> None:
    emulator.hold = True
    running = structured(await generate(client, WAVESPEED, wait_seconds=0))
    before = sending(emulator)
    cases = {
        f"wan-video://jobs/{running['job_id']}/frames/last": f"job '{running['job_id']}' is ",
        "wan-video://jobs/wan22_i2v-000000000000/frames/first": "which this server does not know",
        f"wan-video://jobs/{running['job_id']}/frames/middle": "is a wan-video:// URI but not a frame",
    }
    for uri, expected in cases.items():
        for slug in (WAVESPEED, VTRIX):
            result = await generate(client, slug, image=uri)
            assert result.is_error, uri
            assert expected in text_of(result), text_of(result)
            assert "Nothing was sent" in text_of(result)
    assert "get_result" in text_of(await generate(client, WAVESPEED, image=next(iter(cases))))
    assert sending(emulator) == before
    assert len(emulator.submissions()) == 1
    emulator.release()
    with anyio.fail_after(10):
        done = structured(
            await client.call_tool("get_result", {"job_id": running["job_id"], "wait_seconds": 10})
        )
    late = await generate(client, WAVESPEED, image=f"wan-video://jobs/{done['job_id']}/frames/at/9")
    assert late.is_error
    assert "no frame at 9 s" in text_of(late)


@pytest.mark.anyio
async def test_frames_are_readable_resources(client: Client, emulator: Emulator) -> None:
    record = structured(await generate(client, WAVESPEED))
    frames = frames_of(record["local_path"])
    base = f"wan-video://jobs/{record['job_id']}/frames"
    for tail, index in (("first", 0), ("last", len(frames) - 1), ("at/1.5", 12), ("at/0", 0)):
        [contents] = (await client.read_resource(f"{base}/{tail}")).contents
        assert isinstance(contents, BlobResourceContents)
        assert contents.mime_type == "image/png"
        image = Image.open(io.BytesIO(base64.b64decode(contents.blob))).convert("RGB")
        assert image.tobytes() == frames[index].tobytes(), tail
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert {f"wan-video://jobs/{{job_id}}/frames/{t}" for t in ("first", "last", "at/{seconds}")} <= templates
    emulator.hold = True
    running = structured(await generate(client, WAVESPEED, prompt="still running", wait_seconds=0))
    with pytest.raises(MCPError, match="not completed"):
        await client.read_resource(f"wan-video://jobs/{running['job_id']}/frames/last")


@pytest.mark.anyio
async def test_a_finished_job_shows_a_contact_sheet_of_six_labelled_frames(
    client: Client, emulator: Emulator
) -> None:
    result = await generate(client, WAVESPEED)
    record = structured(result)
    [sheet_block] = [b for b in result.content if isinstance(b, ImageContent)]
    data = base64.b64decode(sheet_block.data)
    assert len(data) <= 100 * 1024
    sheet = Image.open(io.BytesIO(data)).convert("RGB")
    frames = frames_of(record["local_path"])
    tile_w, tile_h = frames[0].size  # 208x120: small enough to keep its size in the grid
    gap = 4
    assert sheet.size == (3 * tile_w + 4 * gap, 2 * tile_h + 3 * gap)
    picks = [0, 8, 16, 23, 31, 39]  # six evenly spaced of 40 frames, the first and the last among them
    for n, index in enumerate(picks):
        x, y = gap + (n % 3) * (tile_w + gap), gap + (n // 3) * (tile_h + gap)
        tile = sheet.crop((x, y, x + tile_w, y + tile_h))
        label = tile.crop((0, 0, 20, 8))
        body = tile.crop((0, tile_h // 2, tile_w, tile_h))
        assert max(ImageStat.Stat(label).mean) < 60, n  # the dark box behind the time label
        assert difference(body, frames[index].crop((0, tile_h // 2, tile_w, tile_h))) < 6, n
    assert contact_sheet(Path(record["local_path"])).times == (0.0, 1.0, 2.0, 2.875, 3.875, 4.875)
    [contents] = (await client.read_resource(record["contact_sheet"])).contents
    assert isinstance(contents, BlobResourceContents)
    assert contents.mime_type == "image/jpeg"
    assert base64.b64decode(contents.blob) == data


@pytest.mark.anyio
async def test_both_image_parameters_take_frames_and_a_frame_is_uploaded_once(
    client: Client, emulator: Emulator
) -> None:
    source = structured(await generate(client, WAVESPEED))
    base = f"wan-video://jobs/{source['job_id']}/frames"
    both = structured(await generate(client, "wan22_i2v", image=f"{base}/first", last_image=f"{base}/last"))
    assert both["status"] == "completed"
    assert [n.split(":")[0] for n in both["notes"]] == ["image", "last_image"]
    [_, job] = emulator.submissions()
    frames = frames_of(source["local_path"])
    assert Image.open(io.BytesIO(sent_bytes(emulator, job))).convert("RGB").tobytes() == frames[0].tobytes()
    last = emulator.image_bytes(str(job.body["last_image"]))
    assert last is not None
    assert Image.open(io.BytesIO(last)).convert("RGB").tobytes() == frames[-1].tobytes()
    uploads = len(emulator.uploads)
    again = structured(await generate(client, WAVESPEED, image=f"{base}/last", prompt="again", new_take=True))
    assert again["status"] == "completed"
    assert len(emulator.uploads) == uploads  # the same frame's bytes went up once
