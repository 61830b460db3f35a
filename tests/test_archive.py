"""Finished videos: archived by the poller whether or not a call waits, verified, described by a
sidecar, shown with a poster frame and readable through resources/read; the download rule."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import av
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents, CallToolResult, ImageContent, ResourceLink
from PIL import Image

from server.app import build_server
from server.jobs.store import Job
from server.media.archive import file_stem, sidecar_record, url_expiry
from server.media.fetch import FetchError, UnsafeURL, UrlPolicy, open_checked
from server.media.video import VideoFacts
from server.sandbox import Emulator, Fault
from server.settings import Settings
from tests.mcp_helpers import minimal_arguments, structured, text_of

FPS = 8  # the emulator fixture's frame rate


@pytest.fixture
async def client(settings: Settings, emulator: Emulator) -> AsyncIterator[Client]:
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        yield c


async def generate(client: Client, slug: str, **extra: object) -> CallToolResult:
    with anyio.fail_after(20):
        return await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug, **extra))


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def decoded(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Frame count, duration in seconds and size of an MP4, by decoding it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.duration is not None
        assert stream.time_base is not None
        return frames, float(stream.duration * stream.time_base), (stream.width, stream.height)


# --- archived by the poller ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_job_is_archived_even_when_no_call_waits(
    client: Client, emulator: Emulator, settings: Settings
) -> None:
    emulator.hold = True
    record = structured(await generate(client, "wan22_i2v_480p_ultra_fast", wait_seconds=0))
    assert record["status"] in ("queued", "running")
    folder = settings.videos_dir
    assert not any(name.endswith(".mp4") for name in files(folder))
    emulator.release()
    with anyio.fail_after(10):
        done = await client.call_tool("get_result", {"job_id": record["job_id"], "wait_seconds": 10})
    final = structured(done)
    assert final["status"] == "completed", text_of(done)
    video = Path(final["local_path"])
    assert video.parent == folder
    stem = video.stem
    assert files(folder) == [f"{stem}.jpg", f"{stem}.json", f"{stem}.mp4", f"{stem}.sheet.jpg"]
    assert record["job_id"] in stem
    assert stem[:10] == time.strftime("%Y-%m-%d")
    frames, duration, _ = decoded(video)
    assert frames == 5 * FPS
    assert duration == pytest.approx(5.0, abs=0.2)
    assert final["poster_path"] == str(folder / f"{stem}.jpg")

    sidecar = json.loads(read(folder / f"{stem}.json"))
    assert sidecar["job_id"] == record["job_id"]
    assert sidecar["model"] == "wan22_i2v_480p_ultra_fast"
    assert sidecar["prompt"] == minimal_arguments("w")["prompt"]
    assert sidecar["seed"] == -1
    assert sidecar["parameters"]["duration"] == 5
    assert sidecar["estimate_usd"] == 0.05
    assert sidecar["provider_url"] == final["video_url"]
    assert sidecar["provider_url_expires"].endswith("Z")
    assert sidecar["video"]["frames"] == 5 * FPS
    assert sidecar["video"]["bytes"] == len(read(video))
    assert sidecar["poster"] == f"{stem}.jpg"


@pytest.mark.anyio
async def test_the_result_shows_a_contact_sheet_and_links_the_mp4(client: Client, settings: Settings) -> None:
    result = await generate(client, "wan22_i2v_flash")
    record = structured(result)
    [sheet] = [b for b in result.content if isinstance(b, ImageContent)]
    assert sheet.mime_type == "image/jpeg"
    data = base64.b64decode(sheet.data)
    assert len(data) <= 100 * 1024
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert image.width <= 3 * 320 + 4 * 4
    assert data == Path(record["local_path"]).with_suffix(".sheet.jpg").read_bytes()

    links = [b for b in result.content if isinstance(b, ResourceLink)]
    assert [link.uri for link in links] == [
        f"wan-video://jobs/{record['job_id']}",
        f"wan-video://jobs/{record['job_id']}/video",
    ]
    video = links[1]
    assert video.mime_type == "video/mp4"
    [contents] = (await client.read_resource(video.uri)).contents
    assert isinstance(contents, BlobResourceContents)
    assert contents.mime_type == "video/mp4"
    assert base64.b64decode(contents.blob) == read(record["local_path"])

    sidecar = json.loads(read(Path(record["local_path"]).with_suffix(".json")))
    assert sidecar["provider_url_expires"].startswith("unknown")
    assert sidecar["cost_usd"] == record["cost_usd"]


@pytest.mark.anyio
async def test_the_output_folder_setting_is_used(tmp_path: Path, emulator: Emulator) -> None:
    from tests.conftest import make_settings

    out = tmp_path / "my videos"
    settings = make_settings(tmp_path / "home", output_dir=out)
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        record = structured(await generate(c, "wan22_i2v"))
    assert Path(record["local_path"]).parent == out
    assert len([n for n in files(out) if n.endswith(".mp4")]) == 1


@pytest.mark.anyio
async def test_a_video_resource_of_an_unfinished_job_is_a_clear_error(
    client: Client, emulator: Emulator
) -> None:
    emulator.hold = True
    record = structured(await generate(client, "wan22_i2v", wait_seconds=0))
    with pytest.raises(MCPError, match="has no saved video"):
        await client.read_resource(f"wan-video://jobs/{record['job_id']}/video")
    emulator.release()


# --- failed downloads ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("fault", [Fault.truncate(), Fault.drop()])
async def test_a_broken_download_leaves_no_file_and_the_job_completes_with_a_warning(
    client: Client, emulator: Emulator, settings: Settings, fault: Fault
) -> None:
    emulator.inject("file", fault, times=3)
    result = await generate(client, "wan22_i2v")
    record = structured(result)
    assert record["status"] == "completed"
    assert record["video_url"].startswith("http://testserver/sandbox/files/")
    assert "could not be saved locally" in record["warning"]
    assert "local_path" not in record
    assert files(settings.videos_dir) == []
    assert not [b for b in result.content if isinstance(b, ImageContent)]
    links = [b for b in result.content if isinstance(b, ResourceLink)]
    assert [link.mime_type for link in links] == ["application/json"]
    assert sum(c.route == "file" for c in emulator.calls) == 3


@pytest.mark.anyio
async def test_one_broken_download_is_retried(client: Client, emulator: Emulator, settings: Settings) -> None:
    emulator.inject("file", Fault.truncate(), times=1)
    record = structured(await generate(client, "wan22_i2v_flash"))
    assert "warning" not in record
    frames, _, _ = decoded(Path(record["local_path"]))
    assert frames == 5 * FPS
    assert sum(c.route == "file" for c in emulator.calls) == 2
    assert not [n for n in files(settings.videos_dir) if n.endswith(".part")]


@pytest.mark.anyio
async def test_a_gone_video_url_is_not_retried(
    client: Client, emulator: Emulator, settings: Settings
) -> None:
    emulator.inject("file", Fault.status(404), times=3)
    record = structured(await generate(client, "wan22_i2v"))
    assert record["status"] == "completed"
    assert "answered 404" in record["warning"]
    assert sum(c.route == "file" for c in emulator.calls) == 1
    assert files(settings.videos_dir) == []


# --- names and sidecars -------------------------------------------------------------------------


def a_job(**changes: object) -> Job:
    values: dict[str, object] = {
        "id": "wan22_i2v-0123456789ab",
        "model": "wan22_i2v",
        "provider": "wavespeed",
        "status": "completed",
        "submit_state": "accepted",
        "params": {"prompt": "p", "seed": 7},
        "request_hash": "x",
        "created_at": 1_700_000_000.0,
        "updated_at": 1_700_000_000.0,
        "video_url": "https://cdn.example.com/out/v.mp4?X-Amz-Signature=secret&Expires=1",
        "finished_at": 1_700_000_100.0,
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def test_file_names_built_from_job_fields_stay_in_their_folder() -> None:
    hostile = file_stem(a_job(id="../../etc/passwd", model="../x"))
    assert "/" not in hostile
    assert ".." not in hostile
    assert file_stem(a_job()).endswith("_wan22_i2v-0123456789ab")


def test_the_sidecar_cuts_the_signed_query_and_knows_when_the_url_expires() -> None:
    facts = VideoFacts(832, 480, 40, 5.0, 8.0, "h264", b"")
    record = sidecar_record(a_job(), None, Path(__file__), Path("p.jpg"), facts)
    assert record["provider_url"] == "https://cdn.example.com/out/v.mp4"
    assert "secret" not in json.dumps(record)
    assert record["provider_url_expires"] == "2023-11-21T22:13:20Z"
    assert url_expiry(a_job(provider="vtrix")).startswith("unknown")


# --- the download rule --------------------------------------------------------------------------

DNS = {
    "cdn.example.com": ["93.184.216.34"],
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["93.184.216.34", "192.168.0.10"],
}


async def fake_resolver(host: str, port: int) -> Sequence[str]:
    if host in DNS:
        return DNS[host]
    return [host]  # an address literal resolves to itself


def policy(*trusted: str) -> UrlPolicy:
    return UrlPolicy(trusted or ("https://api.wavespeed.ai", "http://127.0.0.1:8765"), fake_resolver)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/video.mp4",
        "https://127.0.0.1/video.mp4",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/video.mp4",
        "https://[::1]/video.mp4",
        "https://[::ffff:10.0.0.1]/video.mp4",
        "https://[fe80::1]/video.mp4",
        "https://100.64.0.1/video.mp4",
        "https://224.0.0.1/video.mp4",
        "https://internal.example/video.mp4",
        "https://mixed.example/video.mp4",
        "http://cdn.example.com/video.mp4",
        "ftp://cdn.example.com/video.mp4",
        "http://127.0.0.1:9999/video.mp4",
    ],
)
async def test_private_and_plain_http_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        await policy().check(url)


@pytest.mark.anyio
async def test_a_public_https_url_is_pinned_to_the_checked_address() -> None:
    target = await policy().check("https://cdn.example.com/out/v.mp4?sig=1")
    assert str(target.url) == "https://93.184.216.34/out/v.mp4?sig=1"
    assert target.headers == {"Host": "cdn.example.com"}
    assert target.extensions == {"sni_hostname": "cdn.example.com"}


@pytest.mark.anyio
async def test_the_configured_provider_hosts_are_trusted_even_on_loopback() -> None:
    target = await policy().check("http://127.0.0.1:8765/sandbox/files/x.mp4")
    assert str(target.url) == "http://127.0.0.1:8765/sandbox/files/x.mp4"
    assert target.headers == {}
    assert str((await policy().check("https://api.wavespeed.ai/x")).url) == "https://api.wavespeed.ai/x"


@pytest.mark.anyio
async def test_a_redirect_to_a_private_address_is_refused() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["host"])
        return httpx.Response(302, headers={"Location": "https://internal.example/steal"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(UnsafeURL, match=r"internal\.example resolves to 10\.1\.2\.3"):
            async with open_checked(http, policy(), "https://cdn.example.com/v.mp4"):
                pass
    assert seen == ["cdn.example.com"]


@pytest.mark.anyio
async def test_a_redirect_from_a_trusted_host_to_a_public_cdn_is_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1":
            return httpx.Response(307, headers={"Location": "https://cdn.example.com/v.mp4"})
        assert request.url.host == "93.184.216.34"
        assert request.headers["host"] == "cdn.example.com"
        return httpx.Response(200, content=b"video")

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
        open_checked(http, policy(), "http://127.0.0.1:8765/files/v.mp4") as response,
    ):
        assert await response.aread() == b"video"


@pytest.mark.anyio
async def test_redirects_are_bounded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/again"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(FetchError, match="redirects"):
            async with open_checked(http, policy(), "https://cdn.example.com/v.mp4"):
                pass


def test_old_unfinished_downloads_are_swept_but_fresh_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    from server.media.archive import sweep_partials

    old = tmp_path / ".2026-11-21_job.abc.part"
    fresh = tmp_path / ".2026-11-21_job.def.part"
    final = tmp_path / "2026-11-21_job.mp4"
    for path in (old, fresh, final):
        path.write_bytes(b"x")
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    os.utime(final, (hours_ago, hours_ago))
    assert sweep_partials(tmp_path) == 1
    assert not old.exists()
    assert fresh.exists()
    assert final.exists()


def test_a_download_whose_writer_died_is_swept_and_a_live_writers_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from server.media.archive import sweep_partials

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    orphan = tmp_path / f".2026-11-21_job.{dead_pid}~x1.part"
    live = tmp_path / f".2026-11-21_job.{os.getpid()}~x2.part"
    for path in (orphan, live):
        path.write_bytes(b"x")
    assert sweep_partials(tmp_path) == 1
    assert not orphan.exists()
    assert live.exists()
