"""Spend safety through a real MCP client: caps, the budget under concurrency, duplicate
requests, confirmation by elicitation in both eras, lost submissions, the ledger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from server.app import build_server
from server.sandbox import Emulator, Fault
from server.settings import Settings, SpendPolicy
from tests.conftest import make_settings
from tests.mcp_helpers import ERAS, minimal_arguments, structured, text_of

FAST = "wan22_i2v_480p_ultra_fast"  # $0.05 for 5 s


def spend_settings(home: Path, **spend: Any) -> Settings:
    return make_settings(home, spend=SpendPolicy(**spend))


@pytest.mark.anyio
async def test_fifty_concurrent_calls_against_a_budget_for_ten_submit_ten(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.hold = True
    settings = spend_settings(tmp_path, budget_usd=0.50)
    results: list[Any] = []

    async def one(client: Client, n: int) -> None:
        arguments = {**minimal_arguments(FAST), "prompt": f"take {n}", "wait_seconds": 0}
        results.append(await client.call_tool(f"{FAST}_generate_video", arguments))

    async with Client(build_server(settings, transport=emulator.transport())) as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(one, client, n)
    accepted = [r for r in results if not r.is_error]
    refused = [r for r in results if r.is_error]
    assert len(emulator.submissions()) == 10
    assert len(accepted) == 10
    assert len(refused) == 40
    assert all("budget" in text_of(r) and "Nothing was sent" in text_of(r) for r in refused)


@pytest.mark.anyio
async def test_a_job_over_the_per_job_cap_is_refused_with_price_cap_and_remedy(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = spend_settings(tmp_path, max_job_usd=0.30)
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        big = {**minimal_arguments("wan22_i2v"), "resolution": "720p", "duration": 8}
        result = await client.call_tool("wan22_i2v_generate_video", big)
        small = await client.call_tool("wan22_i2v_generate_video", minimal_arguments("wan22_i2v"))
    assert result.is_error
    message = text_of(result)
    assert "$0.48" in message
    assert "$0.30" in message
    assert "WAN_MCP_MAX_JOB_USD" in message
    assert not small.is_error
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
async def test_a_repeated_request_returns_the_first_job_unless_a_new_take_is_asked(
    settings: Settings, emulator: Emulator
) -> None:
    arguments = {**minimal_arguments(FAST), "seed": -1}
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        first = structured(await client.call_tool(f"{FAST}_generate_video", arguments))
        again = await client.call_tool(f"{FAST}_generate_video", arguments)
        assert structured(again)["job_id"] == first["job_id"]
        assert structured(again)["duplicate_of_earlier_request"] is True
        assert "new_take=true" in text_of(again)
        assert len(emulator.submissions()) == 1
        other = structured(await client.call_tool(f"{FAST}_generate_video", {**arguments, "new_take": True}))
    assert other["job_id"] != first["job_id"]
    assert len(emulator.submissions()) == 2


@pytest.mark.anyio
async def test_a_failed_job_does_not_block_asking_again(settings: Settings, emulator: Emulator) -> None:
    emulator.fail_next_job()
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        first = structured(await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST)))
        second = structured(await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST)))
    assert first["status"] == "failed"
    assert second["status"] == "completed"
    assert len(emulator.submissions()) == 2


@pytest.mark.anyio
async def test_a_lost_submit_answer_is_unconfirmed_then_found_by_get_result(
    settings: Settings, emulator: Emulator
) -> None:
    emulator.inject("ws.submit", Fault.drop())
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        lost = structured(await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST)))
        assert lost["status"] == "unconfirmed"
        assert len(emulator.submissions()) == 1
        with anyio.fail_after(10):
            found = structured(
                await client.call_tool("get_result", {"job_id": lost["job_id"], "wait_seconds": 10})
            )
    assert found["status"] == "completed"
    assert found["video_url"].endswith(f"{emulator.submissions()[0].id}.mp4")
    assert len(emulator.submissions()) == 1
    assert sum(c.route == "ws.submit" for c in emulator.calls) == 1


@pytest.mark.anyio
async def test_an_unconfirmed_submit_the_provider_never_got_is_settled_as_not_created(
    settings: Settings, emulator: Emulator
) -> None:
    emulator.inject("ws.submit", Fault.status(502))
    patient = settings.model_copy(update={"poll": settings.poll.model_copy(update={"reconcile_grace": 120})})
    async with Client(build_server(patient, transport=emulator.transport())) as client:
        lost = structured(await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST)))
        early = structured(await client.call_tool("get_result", {"job_id": lost["job_id"]}))
    assert lost["status"] == "unconfirmed"
    assert early["status"] == "unconfirmed"
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        late = structured(await client.call_tool("get_result", {"job_id": lost["job_id"]}))
    assert late["status"] == "failed"
    assert "never created" in late["error"]
    assert emulator.submissions() == []


@pytest.mark.anyio
async def test_a_vtrix_lost_submit_stays_unconfirmed_and_says_why(
    settings: Settings, emulator: Emulator
) -> None:
    emulator.inject("vx.submit", Fault.drop())
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        lost = structured(await client.call_tool("wan22_i2v_flash_generate_video", minimal_arguments("f")))
        later = await client.call_tool("get_result", {"job_id": lost["job_id"]})
    assert structured(later)["status"] == "unconfirmed"
    assert "Do not submit it again" in text_of(later)


def answering(approve: bool | None, asked: list[str]) -> Callable[..., Any]:
    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        if approve is None:
            return ElicitResult(action="decline")
        return ElicitResult(action="accept", content={"approve": approve})

    return callback


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_an_expensive_job_is_confirmed_through_elicitation(
    era: str, tmp_path: Path, emulator: Emulator
) -> None:
    settings = spend_settings(tmp_path, confirm_above_usd=0.20)
    server = build_server(settings, transport=emulator.transport())
    expensive = {**minimal_arguments("wan22_i2v"), "resolution": "720p"}
    for approve, submitted in ((True, 1), (False, 1), (None, 1)):
        asked: list[str] = []
        async with Client(server, mode=era, elicitation_callback=answering(approve, asked)) as client:
            result = await client.call_tool(
                "wan22_i2v_generate_video", {**expensive, "prompt": f"answer {approve}"}
            )
        assert len(asked) == 1
        assert "$0.30" in asked[0]
        assert result.is_error is (approve is not True), text_of(result)
        assert len(emulator.submissions()) == submitted
    cheap: list[str] = []
    async with Client(server, mode=era, elicitation_callback=answering(True, cheap)) as client:
        assert not (await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST))).is_error
    assert cheap == []


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_without_elicitation_the_agent_is_told_to_ask_and_confirm(
    era: str, tmp_path: Path, emulator: Emulator
) -> None:
    settings = spend_settings(tmp_path, confirm_above_usd=0.20)
    expensive = {**minimal_arguments("wan22_i2v"), "resolution": "720p"}
    async with Client(build_server(settings, transport=emulator.transport()), mode=era) as client:
        refused = await client.call_tool("wan22_i2v_generate_video", expensive)
        assert refused.is_error
        assert "confirm_cost_usd=0.30" in text_of(refused)
        assert emulator.calls == []
        low = await client.call_tool("wan22_i2v_generate_video", {**expensive, "confirm_cost_usd": 0.10})
        assert low.is_error
        agreed = await client.call_tool("wan22_i2v_generate_video", {**expensive, "confirm_cost_usd": 0.30})
    assert structured(agreed)["status"] == "completed"
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
async def test_list_jobs_reports_estimates_costs_and_totals(tmp_path: Path, emulator: Emulator) -> None:
    settings = spend_settings(tmp_path, budget_usd=5.0)
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        await client.call_tool(f"{FAST}_generate_video", minimal_arguments(FAST))
        await client.call_tool(f"{FAST}_generate_video", {**minimal_arguments(FAST), "duration": 8})
        await client.call_tool(
            "wan22_i2v_flash_generate_video", {**minimal_arguments("f"), "resolution": "480P"}
        )
        everything = structured(await client.call_tool("list_jobs", {}))
        flash = structured(await client.call_tool("list_jobs", {"model": "wan22_i2v_flash", "since": "1h"}))
        bad = await client.call_tool("list_jobs", {"status": "done"})
    total = everything["summary"]["total"]
    assert total["jobs"] == 3
    assert total["estimated_usd"] == pytest.approx(0.05 + 0.08 + 0.07)
    assert total["reported_usd"] == pytest.approx(0.07)
    assert total["charged_usd"] == pytest.approx(0.05 + 0.08 + 0.07)
    assert everything["summary"]["by_model"][FAST]["jobs"] == 2
    assert everything["summary"]["budget"]["left_usd"] == pytest.approx(5.0 - 0.20)
    assert [j["model"] for j in flash["jobs"]] == ["wan22_i2v_flash"]
    assert flash["jobs"][0]["cost_usd"] == pytest.approx(0.07)
    assert bad.is_error
    assert "'status' must be one of" in text_of(bad)
