"""Image inputs through a real MCP client against the emulator: every way of giving an image, the
WaveSpeed uploads (both routes, once per content), and every refusal before anything is sent."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import av
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextResourceContents
from PIL import Image

from server.app import build_server
from server.sandbox import EmuJob, Emulator, Fault
from server.settings import Settings
from tests.conftest import make_settings
from tests.mcp_helpers import CAT_URL, structured, text_of

WAVESPEED = ["wan22_i2v_480p_ultra_fast", "wan22_i2v_480p_lora_ultra_fast", "wan22_i2v", "wan21_i2v_480p"]
MODELS = [*WAVESPEED, "wan22_i2v_flash"]
RED = (210, 30, 30)


def image_file(
    path: Path,
    size: tuple[int, int] = (640, 400),
    fmt: str = "PNG",
    mode: str = "RGB",
    color: Any = RED,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, fmt)
    return path


def image_data_uri(size: tuple[int, int] = (640, 400), fmt: str = "JPEG", mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, RED).save(buffer, fmt)
    mime = {"JPEG": "image/jpeg", "PNG": "image/png"}[fmt]
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def decode_data_uri(uri: str) -> Image.Image:
    header, _, payload = uri.partition(",")
    assert header.startswith("data:image/")
    assert header.endswith(";base64")
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


def sent_image(job: EmuJob) -> str:
    """The image reference a submit carried (Vtrix's input.img_url or WaveSpeed's image)."""
    inputs = job.body.get("input")
    if isinstance(inputs, dict):
        return str(cast(dict[str, object], inputs)["img_url"])
    return str(job.body["image"])


def arguments(image: str, **extra: Any) -> dict[str, Any]:
    return {"image": image, "prompt": "a slow dolly-in", **extra}


def middle_frame_colour(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    picture = frames[len(frames) // 2].to_image().convert("RGB").resize((1, 1))
    pixel = cast(tuple[int, int, int], picture.getpixel((0, 0)))
    return pixel


async def generate(client: Client, slug: str, args: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(20):
        return await client.call_tool(f"{slug}_generate_video", args)


@pytest.fixture
def home(settings: Settings) -> Path:
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings.home


@pytest.fixture
async def client(settings: Settings, emulator: Emulator) -> AsyncIterator[Client]:
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        yield c


# --- every way of giving an image, for every model ----------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("slug", MODELS)
@pytest.mark.parametrize("form", ["https", "data", "file"])
async def test_each_way_of_giving_an_image_works_for_each_model(
    client: Client, emulator: Emulator, home: Path, slug: str, form: str
) -> None:
    image = {
        "https": CAT_URL,
        "data": image_data_uri(),
        "file": str(image_file(home / "pictures" / "cat.png")),
    }[form]
    result = await generate(client, slug, arguments(image))
    record = structured(result)
    assert record["status"] == "completed", text_of(result)
    [job] = emulator.submissions()
    sent = sent_image(job)
    routes = [c.route for c in emulator.calls]
    if form == "https":
        assert sent == CAT_URL
        assert not any(r.startswith("ws.upload") for r in routes)
    elif slug == "wan22_i2v_flash":
        assert decode_data_uri(sent).size == (640, 400)
        assert not any(r.startswith("ws.upload") for r in routes)
    else:
        [upload] = emulator.uploads.values()
        assert routes[:2] == ["ws.upload_ticket", "ws.upload_put"]
        assert sent == f"http://testserver/sandbox/uploads/{upload.token}/{upload.filename}"
        assert upload.data is not None
        assert Image.open(io.BytesIO(upload.data)).size == (640, 400)
    assert "Nothing was sent" not in text_of(result)


@pytest.mark.anyio
async def test_the_same_file_is_uploaded_once(client: Client, emulator: Emulator, home: Path) -> None:
    image = str(image_file(home / "cat.png"))
    for prompt in ("first take", "second take"):
        record = structured(await generate(client, "wan22_i2v", {"image": image, "prompt": prompt}))
        assert record["status"] == "completed"
    first, second = emulator.submissions()
    assert first.body["image"] == second.body["image"]
    assert len(emulator.uploads) == 1
    assert [c.route for c in emulator.calls].count("ws.upload_put") == 1


@pytest.mark.anyio
async def test_the_ticket_put_carries_no_key(client: Client, emulator: Emulator, home: Path) -> None:
    await generate(client, "wan22_i2v", arguments(str(image_file(home / "cat.png"))))
    put = next(c for c in emulator.calls if c.route == "ws.upload_put")
    ticket = next(c for c in emulator.calls if c.route == "ws.upload_ticket")
    assert "authorization" not in put.headers
    assert put.headers["content-type"] == "image/png"
    assert ticket.headers["authorization"].startswith("Bearer ")


@pytest.mark.anyio
async def test_without_the_ticket_route_the_binary_route_is_used_and_remembered(
    client: Client, emulator: Emulator, home: Path
) -> None:
    emulator.upload_routes = {"binary"}
    for name, colour in (("a.png", RED), ("b.png", (20, 20, 200))):
        image = str(image_file(home / name, color=colour))
        record = structured(await generate(client, "wan22_i2v_480p_ultra_fast", arguments(image)))
        assert record["status"] == "completed"
    uploads = [c.route for c in emulator.calls if c.route.startswith("ws.upload")]
    assert uploads == ["ws.upload_ticket", "ws.upload_binary", "ws.upload_binary"]
    assert len(emulator.uploads) == 2
    for job in emulator.submissions():
        assert str(job.body["image"]).startswith("http://testserver/sandbox/uploads/")


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["ticket", "binary"])
async def test_the_emulator_renders_the_uploaded_image(
    client: Client, emulator: Emulator, home: Path, route: str
) -> None:
    emulator.upload_routes = {route}
    image = str(image_file(home / "red.png", size=(832, 480)))
    record = structured(await generate(client, "wan22_i2v", arguments(image)))
    red, green, blue = middle_frame_colour(Path(record["local_path"]))
    assert red > 150, (red, green, blue)
    assert max(green, blue) < 80, (red, green, blue)


@pytest.mark.anyio
async def test_an_upload_is_retried_on_5xx(client: Client, emulator: Emulator, home: Path) -> None:
    emulator.inject("ws.upload_ticket", Fault.status(503), times=2)
    emulator.inject("ws.upload_put", Fault.status(500), times=1)
    record = structured(await generate(client, "wan22_i2v", arguments(str(image_file(home / "cat.png")))))
    assert record["status"] == "completed"
    routes = [c.route for c in emulator.calls]
    assert (routes.count("ws.upload_ticket"), routes.count("ws.upload_put")) == (3, 2)


@pytest.mark.anyio
async def test_a_refused_upload_creates_no_job(client: Client, emulator: Emulator, home: Path) -> None:
    emulator.inject("ws.upload_ticket", Fault.status(401))
    result = await generate(client, "wan22_i2v", arguments(str(image_file(home / "cat.png"))))
    assert result.is_error
    assert "refused the API key" in text_of(result)
    assert emulator.submissions() == []
    listing = (await client.read_resource("wan-video://jobs")).contents[0]
    assert isinstance(listing, TextResourceContents)
    assert json.loads(listing.text) == []


# --- refusals before anything is sent -----------------------------------------------------------


async def refused(client: Client, emulator: Emulator, slug: str, args: dict[str, Any]) -> str:
    result = await generate(client, slug, args)
    assert result.is_error, text_of(result)
    assert "Nothing was sent" in text_of(result)
    assert emulator.calls == []
    return text_of(result)


@pytest.mark.anyio
async def test_a_file_outside_the_allowed_folders_is_refused(
    client: Client, emulator: Emulator, tmp_path: Path
) -> None:
    outside = image_file(tmp_path / "elsewhere" / "cat.png")
    message = await refused(client, emulator, "wan22_i2v", arguments(str(outside)))
    assert "outside the folders this server may read" in message


@pytest.mark.anyio
async def test_a_symlink_that_escapes_the_allowed_folders_is_refused(
    client: Client, emulator: Emulator, home: Path, tmp_path: Path
) -> None:
    outside = image_file(tmp_path / "elsewhere" / "cat.png")
    link = home / "cat.png"
    link.symlink_to(outside)
    message = await refused(client, emulator, "wan22_i2v_flash", arguments(str(link)))
    assert "outside the folders" in message


@pytest.mark.anyio
async def test_a_symlink_inside_the_allowed_folders_is_followed(
    client: Client, emulator: Emulator, home: Path
) -> None:
    link = home / "link.png"
    link.symlink_to(image_file(home / "pictures" / "cat.png"))
    record = structured(await generate(client, "wan22_i2v_flash", arguments(str(link))))
    assert record["status"] == "completed"


@pytest.mark.anyio
@pytest.mark.parametrize("where", [".cat.png", ".hidden/cat.png"])
async def test_hidden_files_and_folders_are_refused(
    client: Client, emulator: Emulator, home: Path, where: str
) -> None:
    path = image_file(home / where)
    message = await refused(client, emulator, "wan22_i2v", arguments(str(path)))
    assert "hidden" in message


@pytest.mark.anyio
async def test_a_file_that_is_not_an_image_is_refused(client: Client, emulator: Emulator, home: Path) -> None:
    fake = home / "notes.png"
    fake.write_text("these are my passwords, not a picture\n" * 10)
    message = await refused(client, emulator, "wan22_i2v", arguments(str(fake)))
    assert "is not an image this server can read" in message


@pytest.mark.anyio
async def test_a_truncated_image_is_refused(client: Client, emulator: Emulator, home: Path) -> None:
    whole = image_file(home / "whole.jpg", fmt="JPEG", size=(800, 600)).read_bytes()
    cut = home / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    message = await refused(client, emulator, "wan22_i2v_flash", arguments(str(cut)))
    assert "truncated or corrupt" in message


@pytest.mark.anyio
async def test_a_device_is_refused(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path / "home", allowed_dirs=(tmp_path / "home", Path("/dev")))
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        message = await refused(c, emulator, "wan22_i2v", arguments("/dev/zero"))
    assert "not a regular file" in message


@pytest.mark.anyio
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
async def test_a_named_pipe_is_refused_without_blocking(
    client: Client, emulator: Emulator, home: Path
) -> None:
    pipe = home / "pipe.png"
    os.mkfifo(pipe)
    message = await refused(client, emulator, "wan22_i2v", arguments(str(pipe)))
    assert "not a regular file" in message


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("pictures/cat.png", "relative path"),
        ("http://example.com/cat.png", "http:// URL"),
        ("/nowhere/at/all.png", "outside the folders"),
        ("data:image/png;base64,!!!notbase64!!!", "base64 payload is invalid"),
        ("data:image/png,rawbytes", "not base64"),
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "is not an image this server can read"),
    ],
)
async def test_unusable_image_arguments_are_refused(
    client: Client, emulator: Emulator, home: Path, image: str, expected: str
) -> None:
    message = await refused(client, emulator, "wan22_i2v", arguments(image))
    assert expected in message


@pytest.mark.anyio
async def test_a_missing_file_in_an_allowed_folder_is_refused(
    client: Client, emulator: Emulator, home: Path
) -> None:
    message = await refused(client, emulator, "wan22_i2v", arguments(str(home / "absent.png")))
    assert "names no existing file" in message


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["file", "data"])
@pytest.mark.parametrize(
    ("size", "mode", "fmt", "expected"),
    [
        ((200, 200), "RGB", "PNG", "200x200 px, outside 360-2000 px a side"),
        ((2400, 1000), "RGB", "JPEG", "2400x1000 px, outside 360-2000 px a side"),
        ((640, 400), "RGBA", "PNG", "alpha channel"),
        ((640, 400), "RGB", "TIFF", "TIFF, which is not an accepted format"),
    ],
)
async def test_images_outside_the_flash_limits_are_refused_with_the_fix(
    client: Client,
    emulator: Emulator,
    home: Path,
    form: str,
    size: tuple[int, int],
    mode: str,
    fmt: str,
    expected: str,
) -> None:
    path = image_file(home / f"input.{fmt.lower()}", size=size, mode=mode, fmt=fmt)
    image = str(path)
    if form == "data":
        image = f"data:image/{fmt.lower()};base64,{base64.b64encode(path.read_bytes()).decode()}"
    message = await refused(client, emulator, "wan22_i2v_flash", arguments(image))
    assert expected in message
    assert "fix_image=true" in message
    assert "JPEG/PNG/BMP/WEBP, 360-2000 px a side, at most 10 MB, no alpha channel" in message


@pytest.mark.anyio
async def test_fix_image_flattens_and_scales_and_says_so(
    client: Client, emulator: Emulator, home: Path
) -> None:
    image = str(image_file(home / "small.png", size=(200, 100), mode="RGBA", color=(255, 0, 0, 0)))
    result = await generate(client, "wan22_i2v_flash", arguments(image, fix_image=True))
    record = structured(result)
    assert record["status"] == "completed", text_of(result)
    [note] = record["notes"]
    assert note.startswith(
        "image: flattened its transparency onto white; scaled it from 200x100 to 720x360 px"
    )
    assert "re-encoded it as JPEG" in note
    [job] = emulator.submissions()
    sent = decode_data_uri(sent_image(job))
    assert (sent.format, sent.size, sent.mode) == ("JPEG", (720, 360), "RGB")
    assert sent.convert("RGB").getpixel((10, 10)) == (255, 255, 255)


@pytest.mark.anyio
async def test_fix_image_shrinks_a_large_image(client: Client, emulator: Emulator, home: Path) -> None:
    image = str(image_file(home / "wide.png", size=(3000, 1500)))
    record = structured(await generate(client, "wan22_i2v_flash", arguments(image, fix_image=True)))
    [note] = record["notes"]
    assert note.startswith("image: scaled it from 3000x1500 to 2000x1000 px; re-encoded it as JPEG (")
    [job] = emulator.submissions()
    assert decode_data_uri(str(job.body["input"]["img_url"])).size == (2000, 1000)  # type: ignore[index]


@pytest.mark.anyio
async def test_fix_image_brings_a_heavy_file_under_the_byte_limit(
    client: Client, emulator: Emulator, home: Path
) -> None:
    noise = Image.frombytes("RGB", (1900, 1900), os.urandom(1900 * 1900 * 3))
    heavy = home / "noise.png"
    noise.save(heavy, "PNG", compress_level=0)
    assert heavy.stat().st_size > 10 * 1024 * 1024
    message = await refused(client, emulator, "wan22_i2v_flash", arguments(str(heavy)))
    assert "the limit is 10.0 MB" in message
    record = structured(await generate(client, "wan22_i2v_flash", arguments(str(heavy), fix_image=True)))
    assert record["status"] == "completed"
    assert "re-encoded it as JPEG" in record["notes"][0]
    [job] = emulator.submissions()
    sent = sent_image(job)
    assert len(base64.b64decode(sent.partition(",")[2])) <= 10 * 1024 * 1024


@pytest.mark.anyio
async def test_fix_image_cannot_fix_an_extreme_aspect_ratio(
    client: Client, emulator: Emulator, home: Path
) -> None:
    image = str(image_file(home / "strip.png", size=(4000, 300)))
    message = await refused(client, emulator, "wan22_i2v_flash", arguments(image, fix_image=True))
    assert "Crop it" in message


@pytest.mark.anyio
async def test_fix_image_must_be_a_boolean(client: Client, emulator: Emulator) -> None:
    message = await refused(client, emulator, "wan22_i2v", arguments(CAT_URL, fix_image="yes"))
    assert "'fix_image' must be true or false" in message


@pytest.mark.anyio
async def test_an_image_within_limits_is_sent_unchanged_without_notes(
    client: Client, emulator: Emulator, home: Path
) -> None:
    path = image_file(home / "ok.jpg", fmt="JPEG", size=(800, 600))
    record = structured(await generate(client, "wan22_i2v_flash", arguments(str(path), fix_image=True)))
    assert "notes" not in record
    [job] = emulator.submissions()
    sent = sent_image(job)
    assert base64.b64decode(sent.partition(",")[2]) == path.read_bytes()
    assert record["parameters"]["image"] == str(path)


@pytest.mark.anyio
async def test_the_journal_never_keeps_a_data_uri(client: Client, emulator: Emulator) -> None:
    uri = image_data_uri()
    record = structured(await generate(client, "wan22_i2v_flash", arguments(uri)))
    kept = record["parameters"]["image"]
    assert kept.startswith("data:image/jpeg;base64,sha256:")
    assert len(kept) < 120


@pytest.mark.anyio
async def test_the_generate_schema_offers_fix_image(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for slug in MODELS:
        schema = tools[f"{slug}_generate_video"].input_schema["properties"]["fix_image"]
        assert schema["type"] == "boolean"
        assert schema["default"] is False
