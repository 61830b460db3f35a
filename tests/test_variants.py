"""variants through a real MCP client against the emulator: a set priced and budgeted as one (all
or nothing), one journaled job per take with its own explicit seed, the duplicate guard per take,
and get_result of the group after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.sandbox import EmuJob, Emulator
from server.settings import SpendPolicy
from tests.conftest import make_settings
from tests.mcp_helpers import ERAS, ProgressLog, minimal_arguments, structured, text_of

FAST = "wan22_i2v_480p_ultra_fast"  # $0.05 for 5 s
VTRIX = "wan22_i2v_flash"


def seed_of(job: EmuJob) -> int:
    parameters = job.body.get("parameters")
    seed = parameters["seed"] if isinstance(parameters, dict) else job.body["seed"]  # pyright: ignore[reportUnknownVariableType]
    assert isinstance(seed, int)
    return seed


async def generate(client: Client, slug: str, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(30):
        result = await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug, **arguments))
    return {**structured(result), "_text": text_of(result), "_error": result.is_error}


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_three_takes_under_a_budget_for_two_are_refused_whole_and_nothing_is_sent(
    era: str, tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, spend=SpendPolicy(budget_usd=0.10))
    async with Client(build_server(settings, transport=emulator.transport()), mode=era) as client:
        result = await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST, variants=3))
        assert result.is_error
        message = text_of(result)
        assert "These 3 takes cost about $0.15, but only $0.10" in message
        assert "Nothing was sent" in message
        assert "fewer variants" in message
        listed = structured(await client.call_tool("list_jobs", {}))
    assert emulator.calls == []
    assert listed["jobs"] == []


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_three_takes_under_the_budget_are_three_jobs_with_three_seeds(
    era: str, tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, spend=SpendPolicy(budget_usd=0.20))
    async with Client(build_server(settings, transport=emulator.transport()), mode=era) as client:
        progress = ProgressLog()
        with anyio.fail_after(30):
            result = await client.call_tool(
                f"{FAST}_generate_video", minimal_arguments(FAST, variants=3), progress_callback=progress
            )
        record = structured(result)
        takes = record["takes"]
        assert [t["status"] for t in takes] == ["completed"] * 3, text_of(result)
        assert record["group_id"] == takes[0]["job_id"] == record["job_id"]
        seeds = [t["seed"] for t in takes]
        assert len(set(seeds)) == 3
        assert all(isinstance(s, int) and 0 <= s <= 2147483647 for s in seeds)
        assert sorted(seed_of(job) for job in emulator.submissions()) == sorted(seeds)
        assert len({t["job_id"] for t in takes}) == 3
        assert all(t["local_path"] for t in takes)
        assert [p for p, _, _ in progress.events] == sorted(p for p, _, _ in progress.events)
        assert "take 3/3: done" in progress.messages
        assert all(f"seed {s}" in text_of(result) for s in seeds)
        ledger = structured(await client.call_tool("list_jobs", {}))
        assert ledger["summary"]["budget"]["spent_usd"] == pytest.approx(0.15)
        # The same call again: the same seeds, so every take is the earlier job and nothing is paid.
        again = structured(
            await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST, variants=3))
        )
        assert [t["job_id"] for t in again["takes"]] == [t["job_id"] for t in takes]
        assert all(t["duplicate_of_earlier_request"] for t in again["takes"])
        # A fourth take would go over the budget: 0.15 spent + 0.10 for two new ones.
        over = await client.call_tool(
            f"{FAST}_generate_video", minimal_arguments(FAST, variants=2, new_take=True)
        )
        assert over.is_error
        assert "These 2 takes cost about $0.10" in text_of(over)
    assert len(emulator.submissions()) == 3


@pytest.mark.anyio
async def test_a_given_seed_is_the_first_takes_and_vtrix_takes_get_theirs(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path)
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        ws = await generate(client, FAST, variants=2, seed=2147483647)
        vx = await generate(client, VTRIX, variants=4, seed=7)
        bad = await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST, variants=5))
    assert [t["seed"] for t in ws["takes"]] == [2147483647, 0]
    assert [t["seed"] for t in vx["takes"]] == [7, 8, 9, 10]
    assert [seed_of(j) for j in emulator.submissions("vtrix")] == [7, 8, 9, 10]
    assert [j.body["seed"] for j in emulator.submissions("wavespeed")] == [2147483647, 0]
    assert bad.is_error
    assert "'variants' must be an integer from 1 to 4; got 5" in text_of(bad)
    assert len(emulator.submissions()) == 6


@pytest.mark.anyio
async def test_get_result_of_a_group_shows_every_take_after_a_restart(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path)
    emulator.hold = True
    async with Client(build_server(settings, transport=emulator.transport())) as first:
        started = await generate(first, VTRIX, variants=3, wait_seconds=0)
    assert {t["status"] for t in started["takes"]} <= {"queued", "running"}
    assert f"get_result with job_id '{started['group_id']}'" in started["_text"]
    emulator.release()
    async with Client(build_server(settings, transport=emulator.transport())) as second:
        with anyio.fail_after(20):
            result = await second.call_tool(
                "get_result", {"job_id": started["takes"][2]["job_id"], "wait_seconds": 20}
            )
    record = structured(result)
    assert record["job_id"] == started["takes"][2]["job_id"]
    assert [t["job_id"] for t in record["takes"]] == [t["job_id"] for t in started["takes"]]
    assert [t["status"] for t in record["takes"]] == ["completed"] * 3
    assert len(emulator.submissions()) == 3


@pytest.mark.anyio
async def test_a_refused_take_stops_the_rest_from_being_sent(tmp_path: Path, emulator: Emulator) -> None:
    from server.sandbox import Fault

    settings = make_settings(tmp_path)
    emulator.inject("ws.submit", Fault.status(400), times=1)
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        refused = await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST, variants=3))
        listed = structured(await client.call_tool("list_jobs", {}))
    assert refused.is_error
    assert emulator.submissions() == []
    assert sum(c.route == "ws.submit" for c in emulator.calls) == 1
    assert sorted(j["status"] for j in listed["jobs"]) == ["failed"] * 3
    assert listed["summary"]["total"]["charged_usd"] == 0


@pytest.mark.anyio
async def test_the_price_to_confirm_is_the_whole_sets(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, spend=SpendPolicy(confirm_above_usd=0.10))
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        one = await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST))
        refused = await client.call_tool(
            f"{FAST}_generate_video", minimal_arguments(FAST, variants=3, prompt="x")
        )
        assert not one.is_error
        assert refused.is_error
        assert "set of 3 takes costs about $0.15" in text_of(refused)
        assert "confirm_cost_usd=0.15" in text_of(refused)
        assert len(emulator.submissions()) == 1
        agreed = structured(
            await client.call_tool(
                f"{FAST}_generate_video",
                minimal_arguments(FAST, variants=3, prompt="x", confirm_cost_usd=0.15),
            )
        )
    assert len(agreed["takes"]) == 3
    assert len(emulator.submissions()) == 4


@pytest.mark.anyio
async def test_the_estimate_of_a_set_is_its_takes_together(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path)
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        one = structured(await client.call_tool(f"{FAST}_estimate_cost", {"duration": 8}))
        three = structured(await client.call_tool(f"{FAST}_estimate_cost", {"duration": 8, "variants": 3}))
        bad = await client.call_tool(f"{FAST}_estimate_cost", {"variants": 0})
    assert (one["usd"], three["usd"]) == (0.08, 0.24)
    assert three["basis"].startswith("3 takes at $0.08 each")
    assert bad.is_error
    assert "'variants' must be an integer from 1 to 4" in text_of(bad)
    assert emulator.submissions() == []


@pytest.mark.anyio
async def test_every_take_keeps_what_preparing_the_image_chose(tmp_path: Path, emulator: Emulator) -> None:
    from PIL import Image

    photo = tmp_path / "portrait.png"
    Image.new("RGB", (480, 832), (200, 40, 40)).save(photo)
    settings = make_settings(tmp_path / "home", allowed_dirs=(tmp_path,))
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        record = await generate(client, "wan21_i2v_480p", image=str(photo), variants=2)
    assert [t["status"] for t in record["takes"]] == ["completed", "completed"]
    assert [j.body["size"] for j in emulator.submissions()] == ["480*832", "480*832"]
    assert len({j.body["image"] for j in emulator.submissions()}) == 1
    assert len(emulator.uploads) == 1  # the image went up once for both takes


@pytest.mark.anyio
async def test_variants_as_a_task_send_every_take_and_the_result_lists_them(
    tmp_path: Path, emulator: Emulator
) -> None:
    from tests.task_client import TasksClient

    settings = make_settings(tmp_path)
    extension = TasksClient()
    server = build_server(settings, transport=emulator.transport())
    async with Client(server, extensions=[extension]) as client:
        with anyio.fail_after(30):
            result = await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST, variants=2))
        record = structured(result)
        assert len(extension.created) == 1
        assert record["status"] == "completed", text_of(result)
        assert record["takes"][0]["job_id"] == record["job_id"]
        assert len(record["takes"]) == 2
        with anyio.fail_after(20):
            done = structured(
                await client.call_tool(
                    "get_result", {"job_id": record["takes"][1]["job_id"], "wait_seconds": 20}
                )
            )
    assert [t["status"] for t in done["takes"]] == ["completed", "completed"]
    assert len({seed_of(job) for job in emulator.submissions()}) == 2
