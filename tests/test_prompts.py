"""The prompts through the SDK's in-memory client, in both protocol eras: animate_photo's advice and
its model choice from the catalog's prices, compare_takes on real finished takes (emulator in-process)
with their posters, and clear errors for bad arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ImageContent, TextContent

from server.app import build_server
from server.sandbox import Emulator
from server.settings import Settings
from tests.conftest import make_settings
from tests.mcp_helpers import ERAS, minimal_arguments, structured

pytestmark = pytest.mark.anyio


@pytest.fixture(params=ERAS)
async def client(
    request: pytest.FixtureRequest, settings: Settings, emulator: Emulator
) -> AsyncIterator[Client]:
    async with Client(build_server(settings, transport=emulator.transport()), mode=request.param) as c:
        yield c


async def animate(client: Client, **arguments: str) -> str:
    result = await client.get_prompt("animate_photo", {"image": "/pics/dog.jpg", "idea": "runs", **arguments})
    assert len(result.messages) == 1
    content = result.messages[0].content
    assert isinstance(content, TextContent)
    return content.text


def model_line(text: str, slug: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"- {slug} "))


def verdict(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(("Fits", "Cheapest", "No enabled")))


async def test_prompts_list_names_both_prompts_and_their_arguments(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert sorted(prompts) == ["animate_photo", "compare_takes"]
    args = {a.name: a.required for a in prompts["animate_photo"].arguments or []}
    assert args == {"image": True, "idea": True, "length": False, "budget": False}
    assert {a.name: a.required for a in prompts["compare_takes"].arguments or []} == {"job_ids": True}
    assert all(p.description and p.title for p in prompts.values())


async def test_animate_photo_teaches_the_wan_prompt_and_names_the_inputs(client: Client) -> None:
    text = await animate(client, length="8", budget="0.30")
    assert "Image: /pics/dog.jpg" in text
    assert "Idea: runs" in text
    for part in ("subject", "environment", "motion", "camera", "lighting"):
        assert f"- {part}" in text
    assert "negative_prompt:" in text
    assert "text, watermark, distortion" in text
    assert "last_image: only when the video must end on a given frame" in text
    # Only the models whose catalog entry has last_image are offered it.
    takers = next(line for line in text.splitlines() if "Models that take last_image" in line)
    assert "wan22_i2v_480p_ultra_fast" in takers
    assert "wan21_i2v_480p" not in takers
    assert "wan22_i2v_flash" not in takers


async def test_animate_photo_prices_each_model_at_the_asked_length(client: Client) -> None:
    text = await animate(client, length="8")
    assert model_line(text, "wan22_i2v_480p_ultra_fast").endswith("$0.08.")
    assert "480p: $0.24; 720p: $0.48." in model_line(text, "wan22_i2v")
    assert model_line(text, "wan21_i2v_480p").endswith("$0.32, unverified estimate.")
    assert "cannot make 8 s" in model_line(text, "wan22_i2v_flash")
    assert verdict(text).startswith("Fits, cheapest first: wan22_i2v_480p_ultra_fast $0.08,")


async def test_animate_photo_keeps_to_the_budget(client: Client) -> None:
    fits = verdict(await animate(client, length="8", budget="$0.20"))
    assert "wan22_i2v_480p_ultra_fast $0.08" in fits
    assert "wan22_i2v_480p_lora_ultra_fast $0.16" in fits
    assert "wan22_i2v " not in fits  # $0.24 at 480p is over
    ten = verdict(await animate(client, length="10 s"))
    assert ten.startswith("Fits, cheapest first: wan21_i2v_480p $0.40")
    none = verdict(await animate(client, length="12", budget="1"))
    assert none.startswith("No enabled model fits 12 s within $1.00")


async def test_animate_photo_without_constraints_lists_every_price(client: Client) -> None:
    text = await animate(client)
    assert "5 s: $0.15; 480p, 8 s: $0.24; 720p, 5 s: $0.30; 720p, 8 s: $0.48" in model_line(text, "wan22_i2v")
    assert "480P: $0.07; 720P: $0.14, unverified estimate" in model_line(text, "wan22_i2v_flash")
    assert verdict(text).startswith("Cheapest: wan22_i2v_480p_ultra_fast 5 s: $0.05")


async def test_animate_photo_offers_only_the_enabled_models(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, models=("wan22_i2v_flash", "wan22_i2v"))
    async with Client(build_server(settings, transport=emulator.transport())) as c:
        text = await animate(c, length="5")
    offered = [line.split()[1] for line in text.splitlines() if line.startswith("- wan")]
    assert offered == ["wan22_i2v", "wan22_i2v_flash"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"length": "long"}, "'length' must be a number such as 8; got 'long'."),
        ({"budget": "cheap"}, "'budget' must be a number such as 0.30; got 'cheap'."),
        ({"colour": "red"}, "Unknown argument(s) colour; animate_photo takes image, idea, length, budget."),
    ],
)
async def test_animate_photo_refuses_bad_numbers_clearly(
    client: Client, arguments: dict[str, str], message: str
) -> None:
    with pytest.raises(MCPError) as caught:
        await animate(client, **arguments)
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.message == message


async def test_compare_takes_shows_each_take_with_its_parameters_and_poster(
    client: Client, emulator: Emulator
) -> None:
    ids: list[str] = []
    for seed in (11, 12):
        arguments = minimal_arguments("wan22_i2v", seed=seed, negative_prompt="text, watermark")
        with anyio.fail_after(20):
            record = structured(await client.call_tool("wan22_i2v_generate_video", arguments))
        assert record["status"] == "completed"
        ids.append(record["job_id"])
    result = await client.get_prompt("compare_takes", {"job_ids": f"{ids[0]}, {ids[1]} {ids[0]}"})
    first = result.messages[0].content
    assert isinstance(first, TextContent)
    text = first.text
    assert "Compare these 2 takes" in text
    for job_id, seed in zip(ids, (11, 12), strict=True):
        line = next(line for line in text.splitlines() if line.startswith(f"- {job_id} "))
        assert "(wan22_i2v, completed, $0.15)" in line
        assert f"'seed': {seed}" in line
        assert "'negative_prompt': 'text, watermark'" in line
        assert "example.com" not in line  # the image is left out of the take's line
    assert "New seed, same prompt, when the takes are close" in text
    assert "New prompt, same seed, when every take misses the same way" in text
    posters = [m.content for m in result.messages if isinstance(m.content, ImageContent)]
    assert len(posters) == 2
    assert all(p.mime_type == "image/jpeg" and p.data for p in posters)
    labels = [m.content.text for m in result.messages[1:] if isinstance(m.content, TextContent)]
    assert labels == [f"Poster of {ids[0]}:", f"Poster of {ids[1]}:"]


async def test_compare_takes_says_which_takes_are_not_finished(client: Client, emulator: Emulator) -> None:
    emulator.hold = True
    arguments = {**minimal_arguments("wan22_i2v"), "wait_seconds": 0}
    job_id = structured(await client.call_tool("wan22_i2v_generate_video", arguments))["job_id"]
    result = await client.get_prompt("compare_takes", {"job_ids": job_id})
    first = result.messages[0].content
    assert isinstance(first, TextContent)
    assert f"Not finished yet: {job_id}; call get_result on them first." in first.text
    assert len(result.messages) == 1
    emulator.release()


@pytest.mark.parametrize(
    ("job_ids", "message"),
    [
        ("wan22_i2v-000000000000", "Unknown job id 'wan22_i2v-000000000000'; list_jobs shows recent ones."),
        (" , ", "'job_ids' needs at least one job id; list_jobs shows recent ones."),
        (",".join(f"j{i}" for i in range(9)), "'job_ids' names 9 jobs; compare at most 8 at a time."),
    ],
)
async def test_compare_takes_refuses_bad_ids_clearly(
    client: Client, emulator: Emulator, job_ids: str, message: str
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("compare_takes", {"job_ids": job_ids})
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.message == message
    assert emulator.calls == []
