"""A new user's first calls, the way an agent writes them, against a server started as a client
starts it: over stdio, ``HOME`` an empty folder, no ``WAN_MCP_HOME`` or ``WAN_MCP_ALLOWED_DIRS``,
so the journal and videos land in the platform's default folder (on Linux under the hidden
``~/.local/share``). Only the provider roots, dummy keys and the poll pace are set."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult
from PIL import Image

from server.app import build_server
from server.sandbox import Emulator
from tests.conftest import VX_KEY, WS_KEY, make_settings
from tests.mcp_helpers import CAT_URL, structured, text_of

CALL_LIMIT = 60.0


def photo(path: Path, size: tuple[int, int], fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (150, 100, 60)).save(path, fmt, quality=95)
    return path


@pytest.fixture
def user_home(tmp_path: Path) -> Path:
    home = tmp_path / "stranger"
    home.mkdir()
    return home


@pytest.fixture
async def stranger(user_home: Path, loopback_emulator: str) -> AsyncIterator[Client]:
    env = {
        "HOME": str(user_home),
        "PATH": os.environ.get("PATH", ""),
        "WAVESPEED_API_KEY": WS_KEY,
        "VTRIX_API_KEY": VX_KEY,
        "WAVESPEED_BASE_URL": loopback_emulator,
        "VTRIX_BASE_URL": loopback_emulator,
        "WAN_MCP_POLL_INTERVAL": "0.05",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env)
    async with Client(params) as client:
        yield client


async def call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(CALL_LIMIT):
        return await client.call_tool(name, arguments)


@pytest.mark.anyio
async def test_a_stranger_animates_photos_and_reuses_a_poster_from_the_hidden_data_folder(
    stranger: Client, user_home: Path, emulator: Emulator
) -> None:
    photo(user_home / "Pictures" / "harbour at dusk.jpg", (1280, 720))
    data_home = user_home / ".local" / "share" / "wan-video-mcp"

    first = await call(
        stranger,
        "wan22_i2v_480p_ultra_fast_generate_video",
        {"image": "~/Pictures/harbour at dusk.jpg", "prompt": "boats rock gently, slow pan right"},
    )
    record = structured(first)
    assert record["status"] == "completed", text_of(first)
    assert Path(record["local_path"]).is_relative_to(data_home)

    by_url = await call(
        stranger,
        "wan22_i2v_480p_ultra_fast_generate_video",
        {
            "image": f"file://{user_home}/Pictures/harbour%20at%20dusk.jpg",
            "prompt": "一只猫慢慢转过头\uff0c镜头缓慢推进\uff0c暖色灯光",
            "duration": 8,
        },
    )
    assert structured(by_url)["status"] == "completed", text_of(by_url)
    assert emulator.submissions()[-1].body["prompt"] == "一只猫慢慢转过头\uff0c镜头缓慢推进\uff0c暖色灯光"

    poster = record["poster_path"]
    assert Path(poster).is_relative_to(data_home)
    again = await call(
        stranger, "wan22_i2v_generate_video", {"image": poster, "prompt": "the boats drift out to sea"}
    )
    assert structured(again)["status"] == "completed", text_of(again)
    poster_bytes = await anyio.Path(poster).read_bytes()
    assert emulator.image_bytes(str(emulator.submissions()[-1].body["image"])) == poster_bytes


@pytest.mark.anyio
@pytest.mark.parametrize(
    "where", [".ssh/id_ed25519.png", ".aws/shot.png", "Pictures/.secret.png", ".local/share/other-app/a.png"]
)
async def test_hidden_files_the_user_did_not_point_at_stay_refused(
    stranger: Client, user_home: Path, emulator: Emulator, where: str
) -> None:
    path = photo(user_home / where, (640, 400), "PNG")
    before = len(emulator.calls)
    result = await call(stranger, "wan22_i2v_generate_video", {"image": str(path), "prompt": "x"})
    assert result.is_error
    assert "hidden" in text_of(result)
    assert "Nothing was sent" in text_of(result)
    assert len(emulator.calls) == before


@pytest.mark.anyio
async def test_a_hidden_file_inside_the_servers_own_folder_is_refused(
    stranger: Client, user_home: Path, emulator: Emulator
) -> None:
    inside = photo(user_home / ".local" / "share" / "wan-video-mcp" / "videos" / ".partial.png", (640, 400))
    result = await call(stranger, "wan22_i2v_generate_video", {"image": str(inside), "prompt": "x"})
    assert result.is_error
    assert "hidden" in text_of(result)
    assert not emulator.submissions()


# --- a phone photo on models with fixed sizes or tight limits (in memory) -------------------------


@pytest.fixture
async def client(tmp_path: Path, emulator: Emulator) -> AsyncIterator[Client]:
    settings = make_settings(tmp_path / "home", allowed_dirs=(tmp_path,))
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        yield c


@pytest.mark.anyio
async def test_a_portrait_photo_gets_a_portrait_size_when_none_is_given(
    client: Client, tmp_path: Path, emulator: Emulator
) -> None:
    portrait = photo(tmp_path / "me.jpg", (1080, 1920))
    result = await call(
        client, "wan21_i2v_480p_generate_video", {"image": str(portrait), "prompt": "she smiles"}
    )
    record = structured(result)
    assert record["status"] == "completed", text_of(result)
    assert emulator.submissions()[-1].body["size"] == "480*832"
    assert record["parameters"]["size"] == "480*832"
    assert any("size: 480*832" in note for note in record["notes"])


@pytest.mark.anyio
async def test_a_size_that_crops_the_photo_is_sent_as_asked_with_a_note(
    client: Client, tmp_path: Path, emulator: Emulator
) -> None:
    portrait = photo(tmp_path / "me.jpg", (1080, 1920))
    result = await call(
        client,
        "wan21_i2v_480p_generate_video",
        {"image": str(portrait), "prompt": "she smiles", "size": "832*480"},
    )
    record = structured(result)
    assert emulator.submissions()[-1].body["size"] == "832*480"
    assert any("crop or stretch" in note and "480*832" in note for note in record["notes"])


@pytest.mark.anyio
async def test_an_image_url_keeps_the_documented_default_size(client: Client, emulator: Emulator) -> None:
    result = await call(client, "wan21_i2v_480p_generate_video", {"image": CAT_URL, "prompt": "p"})
    assert structured(result)["status"] == "completed"
    assert emulator.submissions()[-1].body["size"] == "832*480"
    assert "notes" not in structured(result)


@pytest.mark.anyio
async def test_a_large_phone_jpeg_is_refused_by_vtrix_until_fix_image_then_scaled(
    client: Client, tmp_path: Path, emulator: Emulator
) -> None:
    big = photo(tmp_path / "IMG_0001.jpg", (3024, 4032))
    arguments = {"image": str(big), "prompt": "slow dolly-in"}
    refused = await call(client, "wan22_i2v_flash_generate_video", arguments)
    assert refused.is_error
    assert "fix_image=true" in text_of(refused)
    assert not emulator.submissions()
    fixed = await call(client, "wan22_i2v_flash_generate_video", {**arguments, "fix_image": True})
    record = structured(fixed)
    assert record["status"] in ("running", "completed"), text_of(fixed)
    sent_input = emulator.submissions()[-1].body["input"]
    assert isinstance(sent_input, dict)
    sent = Image.open(io.BytesIO(emulator.image_bytes(str(sent_input["img_url"])) or b""))
    assert max(sent.size) <= 2000
    assert sent.size[0] < sent.size[1]
    assert any("scaled" in note for note in record["notes"])
