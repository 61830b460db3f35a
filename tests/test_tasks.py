"""Generate calls as MCP tasks (SEP-2663) through real clients: the SDK ``Client`` with a small
tasks extension (in memory, over stdio and over Streamable HTTP), and raw JSON-RPC over HTTP for
the wire shapes and error codes. The emulator stands in for the providers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult

from server.app import build_server
from server.jobs.store import SqliteStore
from server.sandbox import Emulator, Fault
from server.settings import Settings, SpendPolicy
from tests.conftest import FAST_POLL, make_settings
from tests.mcp_helpers import minimal_arguments, serve_asgi, stdio_server, structured, text_of
from tests.task_client import (
    TASKS,
    TaskCreated,
    TasksClient,
    TaskState,
    cancel_task,
    get_task,
    start_task,
    until,
)

pytestmark = pytest.mark.anyio

FAST = "wan22_i2v_480p_ultra_fast"
GENERATE = f"{FAST}_generate_video"
# A poll every 20 ms, so a held emulator job is not polled in a tight loop.
SLOW_POLL = FAST_POLL.model_copy(update={"interval": 0.02})
# One request to each provider per 10^6 s window (the windows follow the monotonic clock, so the
# next place is days away unless this run straddles a window's end: a one-in-10^5 chance). The
# first task is sent; the next one waits to be sent, and can be cancelled for free.
ONE_REQUEST = FAST_POLL.model_copy(update={"provider_rate": 1e-6, "provider_burst": 1})
PROGRESS_LINE = re.compile(
    r"^(waiting to be sent to the provider|submitting|queued at the provider for \d+ s|"
    r"running for \d+ s|finished at the provider; saving the video)"
)


def arguments(prompt: str = "a cat turns its head, slow dolly-in", **extra: Any) -> dict[str, Any]:
    return minimal_arguments(FAST, prompt=prompt, **extra)


def plain(result: CallToolResult) -> dict[str, Any]:
    """A result as the wire carries it, without the per-response serverInfo stamp."""
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    dumped.pop("_meta", None)
    return dumped


def sent(state: TaskState) -> bool:
    return bool(state.status_message and state.status_message.startswith(("queued at the", "running")))


@pytest.fixture
async def tasks_client(settings: Settings, emulator: Emulator) -> AsyncIterator[tuple[Client, TasksClient]]:
    extension = TasksClient()
    async with Client(build_server(settings, transport=emulator.transport()), extensions=[extension]) as c:
        yield c, extension


async def test_the_server_advertises_the_tasks_extension_with_no_settings(
    tasks_client: tuple[Client, TasksClient],
) -> None:
    client, _ = tasks_client
    assert client.server_capabilities.extensions is not None
    assert client.server_capabilities.extensions[TASKS] == {}  # beside the player's Apps extension


async def test_a_generate_call_is_a_task_followed_to_the_full_result(
    tasks_client: tuple[Client, TasksClient], emulator: Emulator, settings: Settings
) -> None:
    client, extension = tasks_client
    with anyio.fail_after(30):
        result = await client.call_tool(GENERATE, arguments())
    record = structured(result)
    assert record["status"] == "completed", text_of(result)
    assert record["video_url"].startswith("http://testserver/sandbox/files/")
    assert await anyio.Path(record["local_path"]).is_file()
    kinds = [block.type for block in result.content]
    assert kinds == ["text", "resource_link", "resource_link", "image"]

    [created] = extension.created
    assert created.task_id.startswith("task_")
    assert len(created.task_id) >= 27
    assert record["job_id"] not in created.task_id
    assert created.status == "working"
    assert created.ttl_ms == round(settings.task_ttl_days * 86_400_000)
    assert created.poll_interval_ms == 0  # the test settings poll at once
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created.created_at)
    working = [s for s in extension.seen if s.status == "working"]
    assert all(s.status_message and PROGRESS_LINE.match(s.status_message) for s in working), working
    assert all(s.poll_interval_ms is not None for s in working)
    final = extension.seen[-1]
    assert final.status == "completed"
    assert final.status_message == "done"

    # The result is what the synchronous tools say about the same job.
    again = await client.call_tool("get_result", {"job_id": record["job_id"]})
    assert plain(result) == plain(again)
    assert len(emulator.submissions()) == 1


async def test_the_task_is_durable_before_the_answer_and_resolves_at_once(
    tasks_client: tuple[Client, TasksClient], settings: Settings
) -> None:
    client, _ = tasks_client
    task = await start_task(client, GENERATE, arguments())
    # Another connection to the journal sees the committed row the moment the task arrives.
    other = SqliteStore(settings.database_path)
    try:
        row = next(iter(other.select_now("task_id = ?", (task.task_id,))), None)
    finally:
        other.close_now()
    assert row is not None
    assert row.model == FAST
    state = await get_task(client, task.task_id)
    assert state.task_id == task.task_id
    assert state.status in ("working", "completed")
    done = await until(client, task.task_id, lambda s: s.status != "working")
    assert done.status == "completed"
    assert done.result is not None
    assert done.result["structuredContent"]["job_id"] == row.id


async def test_progress_is_the_status_message_while_the_provider_renders(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.hold = True
    settings = make_settings(tmp_path, poll=SLOW_POLL)
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        task = await start_task(c, GENERATE, arguments())
        state = await until(c, task.task_id, lambda s: (s.status_message or "").startswith("running"))
        assert state.status == "working"
        assert state.poll_interval_ms == 20
        job_id = _job_id(settings, task)
        record = structured(await c.call_tool("get_result", {"job_id": job_id, "wait_seconds": 0}))
        assert _same_line(state.status_message, record["progress"])
        emulator.release()
        done = await until(c, task.task_id, lambda s: s.status != "working")
    assert done.status == "completed"


def _same_line(a: str | None, b: str) -> bool:
    return a is not None and re.sub(r"\d+", "N", a) == re.sub(r"\d+", "N", b)


def _job_id(settings: Settings, task: TaskCreated) -> str:
    store = SqliteStore(settings.database_path)
    try:
        row = next(iter(store.select_now("task_id = ?", (task.task_id,))), None)
    finally:
        store.close_now()
    assert row is not None
    return row.id


async def test_a_job_the_provider_fails_completes_with_an_error_result(
    tasks_client: tuple[Client, TasksClient], emulator: Emulator
) -> None:
    client, _ = tasks_client
    emulator.fail_next_job("the prompt was flagged by moderation")
    task = await start_task(client, GENERATE, arguments())
    done = await until(client, task.task_id, lambda s: s.status != "working")
    assert done.status == "completed", done
    assert done.error is None
    assert done.result is not None
    assert done.result["isError"] is True
    assert done.result["structuredContent"]["status"] == "failed"
    assert "flagged by moderation" in done.result["structuredContent"]["error"]
    assert "flagged by moderation" in done.result["content"][0]["text"]


async def test_a_cancel_before_the_submit_costs_nothing_and_ends_cancelled(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, poll=ONE_REQUEST, spend=SpendPolicy(budget_usd=1.0))
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        first = await start_task(c, GENERATE, arguments("the first take"))
        await until(c, first.task_id, sent)
        second = await start_task(c, GENERATE, arguments("the second take"))
        waiting = await get_task(c, second.task_id)
        assert waiting.status == "working"
        assert waiting.status_message == "waiting to be sent to the provider"

        ack = await cancel_task(c, second.task_id)
        assert ack.model_dump(exclude={"meta"}, by_alias=True) == {"resultType": "complete"}
        state = await get_task(c, second.task_id)
        assert state.status == "cancelled"
        assert state.result is None
        assert "nothing was charged" in (state.status_message or "")
        ledger = structured(await c.call_tool("list_jobs", {}))
    assert len(emulator.submissions()) == 1
    [cancelled] = [j for j in ledger["jobs"] if j["status"] == "cancelled"]
    assert "nothing was charged" in cancelled["error"]
    assert ledger["summary"]["total"]["charged_usd"] == 0.05  # the first job only
    assert ledger["summary"]["budget"]["spent_usd"] == 0.05


async def test_a_cancel_after_the_submit_is_billed_and_still_saves_the_video(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.hold = True
    settings = make_settings(tmp_path, poll=SLOW_POLL)
    extension = TasksClient()
    async with Client(build_server(settings, transport=emulator.transport()), extensions=[extension]) as c:
        task = await start_task(c, GENERATE, arguments())
        await until(c, task.task_id, sent)
        await cancel_task(c, task.task_id)
        await cancel_task(c, task.task_id)  # a second cancel is acknowledged too
        state = await get_task(c, task.task_id)
        assert state.status == "working"
        assert "billed" in (state.status_message or "")
        emulator.release()
        done = await until(c, task.task_id, lambda s: s.status != "working")
        ledger = structured(await c.call_tool("list_jobs", {}))
        job_id = _job_id(settings, task)
        again = await c.call_tool("get_result", {"job_id": job_id})
    assert done.status == "completed"
    assert "billed" in (done.status_message or "")
    assert done.result is not None
    result = CallToolResult.model_validate(done.result)
    record = structured(result)
    assert record["status"] == "completed"
    assert record["video_url"]
    assert await anyio.Path(record["local_path"]).is_file()
    assert "billed" in record["cancel_note"]
    assert "cancel_requested_at" in record
    assert "billed as usual and its video is still saved" in text_of(result)
    assert any(block.type == "resource_link" for block in result.content)
    [row] = ledger["jobs"]
    assert row["status"] == "completed"
    assert "billed" in row["cancel_note"]
    assert ledger["summary"]["total"]["charged_usd"] == 0.05
    assert structured(again)["cancel_note"] == record["cancel_note"]
    assert len(emulator.submissions()) == 1


async def test_a_task_survives_a_restart_and_is_never_submitted_twice(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.hold = True
    settings = make_settings(tmp_path, poll=SLOW_POLL)
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        task = await start_task(c, GENERATE, arguments())
        await until(c, task.task_id, sent)
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        state = await get_task(c, task.task_id)
        assert state.status == "working"
        assert sent(state)
        emulator.release()
        done = await until(c, task.task_id, lambda s: s.status != "working")
    assert done.status == "completed"
    assert done.result is not None
    assert done.result["structuredContent"]["video_url"]
    assert len(emulator.submissions()) == 1


async def test_a_task_not_yet_sent_when_the_server_stopped_is_settled_unsent(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, poll=ONE_REQUEST)
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        first = await start_task(c, GENERATE, arguments("the first take"))
        await until(c, first.task_id, sent)
        second = await start_task(c, GENERATE, arguments("the second take"))
    restarted = make_settings(tmp_path, poll=FAST_POLL)
    async with Client(
        build_server(restarted, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        unsent = await get_task(c, second.task_id)
        finished = await until(c, first.task_id, lambda s: s.status != "working")
    assert unsent.status == "completed"
    assert unsent.result is not None
    assert unsent.result["isError"] is True
    assert "nothing was sent and nothing was charged" in unsent.result["structuredContent"]["error"]
    assert finished.status == "completed"
    assert len(emulator.submissions()) == 1


async def test_unknown_and_expired_task_ids_are_invalid_params(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, task_ttl_days=1e-9)  # a task expires within a millisecond
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        for call in (get_task, cancel_task):
            with pytest.raises(MCPError) as unknown:
                await call(c, "task_nobody-has-this-id")
            assert unknown.value.error.code == -32602
        task = await start_task(c, GENERATE, arguments())
        assert task.ttl_ms == 0
        with anyio.fail_after(5):
            while True:
                try:
                    await get_task(c, task.task_id)
                except MCPError as exc:
                    expired = exc
                    break
        assert expired.error.code == -32602
        assert "get_result" in expired.error.message
        job_id = _job_id(settings, task)
        with anyio.fail_after(20):
            done = structured(await c.call_tool("get_result", {"job_id": job_id, "wait_seconds": 15}))
    assert done["status"] == "completed"


async def test_refusals_and_declined_confirmations_are_plain_errors_never_tasks(
    tmp_path: Path, emulator: Emulator
) -> None:
    spend = SpendPolicy(max_job_usd=0.06, budget_usd=0.04, confirm_above_usd=0.04)
    settings = make_settings(tmp_path, spend=spend)

    async def decline(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="decline")

    server = build_server(settings, transport=emulator.transport())
    extension = TasksClient()
    async with Client(server, extensions=[extension], elicitation_callback=decline) as c:
        for bad, said in (
            (arguments(duration=7), "duration"),  # not a documented length
            (arguments(duration=8, confirm_cost_usd=0.08), "per-job cap"),
            (arguments(confirm_cost_usd=0.05), "budget"),
            (arguments(), "did not agree"),  # the user declines the price
        ):
            answer = await c.call_tool(GENERATE, bad)
            assert answer.is_error, text_of(answer)
            assert said in text_of(answer)
        ledger = structured(await c.call_tool("list_jobs", {}))
    assert extension.created == []
    assert ledger["jobs"] == []
    assert emulator.submissions() == []


async def test_an_agreed_price_turns_into_a_task_after_the_confirmation(
    tmp_path: Path, emulator: Emulator
) -> None:
    settings = make_settings(tmp_path, spend=SpendPolicy(confirm_above_usd=0.04))
    asked: list[str] = []

    async def accept(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    extension = TasksClient()
    server = build_server(settings, transport=emulator.transport())
    async with Client(server, extensions=[extension], elicitation_callback=accept) as c:
        with anyio.fail_after(30):
            result = await c.call_tool(GENERATE, arguments())
    assert len(asked) == 1
    assert len(extension.created) == 1
    assert structured(result)["status"] == "completed"


async def test_estimates_get_result_and_list_jobs_are_never_tasks(
    tasks_client: tuple[Client, TasksClient],
) -> None:
    client, extension = tasks_client
    done = structured(await client.call_tool(GENERATE, arguments()))
    for name, args in (
        (f"{FAST}_estimate_cost", {"duration": 8}),
        ("get_result", {"job_id": done["job_id"]}),
        ("list_jobs", {}),
    ):
        answer = await client.session.call_tool(name, args, allow_claimed=True)
        assert isinstance(answer, CallToolResult), (name, answer)
        assert not answer.is_error, (name, answer)
    assert len(extension.created) == 1


async def test_a_repeated_request_follows_the_same_task_and_pays_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.hold = True
    settings = make_settings(tmp_path, poll=SLOW_POLL)
    async with Client(
        build_server(settings, transport=emulator.transport()), extensions=[TasksClient()]
    ) as c:
        first = await start_task(c, GENERATE, arguments())
        again = await start_task(c, GENERATE, arguments())
        assert again.task_id == first.task_id
        assert "not paid for again" in (again.status_message or "")
        emulator.release()
        await until(c, first.task_id, lambda s: s.status == "completed")
        # Once the job has ended, a repeat is answered at once, as to any client.
        repeat = await c.session.call_tool(GENERATE, arguments(), allow_claimed=True)
    assert isinstance(repeat, CallToolResult)
    assert structured(repeat)["duplicate_of_earlier_request"] is True
    assert len(emulator.submissions()) == 1


async def test_clients_that_do_not_declare_tasks_see_no_change(tmp_path: Path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path)
    server = build_server(settings, transport=emulator.transport())
    async with Client(server) as modern:
        result = await modern.session.call_tool(GENERATE, arguments("modern"), allow_claimed=True)
        assert isinstance(result, CallToolResult)
        assert structured(result)["status"] == "completed"
        with pytest.raises(MCPError) as undeclared:
            await get_task(modern, "task_whatever")
        assert undeclared.value.error.code == -32021
    # A 2025-11-25 client gets no task even if it lists the extension, and no tasks/* methods.
    async with Client(server, mode="legacy", extensions=[TasksClient()]) as legacy:
        result = await legacy.call_tool(GENERATE, arguments("legacy"))
        assert structured(result)["status"] == "completed"
        with pytest.raises(MCPError) as missing:
            await get_task(legacy, "task_whatever")
        assert missing.value.error.code == -32601
    assert len(emulator.submissions()) == 2


async def test_a_task_over_stdio(tmp_path: Path, emulator: Emulator, loopback_emulator: str) -> None:
    extension = TasksClient()
    with anyio.fail_after(60):
        async with Client(stdio_server(tmp_path / "home", loopback_emulator), extensions=[extension]) as c:
            result = await c.call_tool(GENERATE, arguments())
    assert structured(result)["status"] == "completed", text_of(result)
    assert len(extension.created) == 1
    assert len(emulator.submissions()) == 1


# --- raw JSON-RPC over Streamable HTTP ----------------------------------------------------------


def _meta(declare: bool) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}} if declare else {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
    }


class Raw:
    """One JSON-RPC request per POST, as a 2026-07-28 client sends them."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url, self.ids = http, url, 0

    async def call(
        self, method: str, params: dict[str, Any], *, name: str | None = None, declare: bool = True
    ) -> tuple[int, dict[str, Any]]:
        self.ids += 1
        headers = {
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method,
            "Accept": "application/json, text/event-stream",
        }
        if name is not None:
            headers["Mcp-Name"] = name
        body = {
            "jsonrpc": "2.0",
            "id": self.ids,
            "method": method,
            "params": {**params, "_meta": _meta(declare)},
        }
        response = await self.http.post(self.url, json=body, headers=headers)
        text = response.text
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
        return response.status_code, json.loads(text)


@pytest.fixture
async def raw(tmp_path: Path, loopback_emulator: str) -> AsyncIterator[Raw]:
    settings = make_settings(tmp_path / "home", base_url=loopback_emulator)
    app = build_server(settings).streamable_http_app()
    async with serve_asgi(app) as base, httpx.AsyncClient(timeout=30) as http:
        yield Raw(http, f"{base}/mcp")


async def test_raw_http_task_shapes_and_error_codes(raw: Raw, emulator: Emulator) -> None:
    _, discovered = await raw.call("server/discover", {})
    assert discovered["result"]["capabilities"]["extensions"][TASKS] == {}

    # The legacy params.task field is ignored: the declaration alone decides.
    call = {"name": GENERATE, "arguments": arguments(), "task": {"ttl": 1000}}
    status, created = await raw.call("tools/call", call, name=GENERATE)
    task = created["result"]
    assert status == 200
    assert task["resultType"] == "task"
    assert "task" not in task
    assert set(task) >= {"taskId", "status", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"}
    assert task["status"] == "working"
    assert task["ttlMs"] > 0
    task_id = task["taskId"]

    with anyio.fail_after(20):
        while True:
            _, got = await raw.call("tasks/get", {"taskId": task_id}, name=task_id)
            if got["result"]["status"] != "working":
                break
    assert got["result"]["resultType"] == "complete"
    assert got["result"]["status"] == "completed"
    assert got["result"]["result"]["structuredContent"]["video_url"]

    undeclared = {"name": GENERATE, "arguments": arguments("undeclared"), "task": {"ttl": 1000}}
    _, plain_answer = await raw.call("tools/call", undeclared, name=GENERATE, declare=False)
    assert "resultType" not in plain_answer["result"] or plain_answer["result"]["resultType"] == "complete"
    assert plain_answer["result"]["structuredContent"]["status"] == "completed"

    status, unknown = await raw.call("tasks/get", {"taskId": "task_unknown"}, name="task_unknown")
    assert (status, unknown["error"]["code"]) == (400, -32602)
    status, unknown = await raw.call("tasks/cancel", {"taskId": "task_unknown"}, name="task_unknown")
    assert unknown["error"]["code"] == -32602
    _, updated = await raw.call("tasks/update", {"taskId": task_id, "inputResponses": {}}, name=task_id)
    assert updated["result"]["resultType"] == "complete"
    status, mismatch = await raw.call("tasks/get", {"taskId": task_id}, name="task_someone-else")
    assert (status, mismatch["error"]["code"]) == (400, -32020)
    status, not_declared = await raw.call("tasks/get", {"taskId": task_id}, name=task_id, declare=False)
    assert not_declared["error"]["code"] == -32021
    assert not_declared["error"]["data"]["requiredCapabilities"]["extensions"] == {TASKS: {}}
    _, gone = await raw.call("tasks/result", {"taskId": task_id}, name=task_id)
    assert gone["error"]["code"] == -32601
    assert len(emulator.submissions()) == 2


async def test_raw_http_legacy_session_has_no_tasks_methods(raw: Raw) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"extensions": {TASKS: {}}},
            "clientInfo": {"name": "legacy-raw", "version": "0"},
        },
    }
    response = await raw.http.post(raw.url, json=init, headers=headers)
    assert response.status_code == 200
    session = {
        **headers,
        "Mcp-Session-Id": response.headers["mcp-session-id"],
        "MCP-Protocol-Version": "2025-11-25",
    }
    await raw.http.post(
        raw.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
    )

    async def send(message: dict[str, Any]) -> dict[str, Any]:
        answer = await raw.http.post(raw.url, json=message, headers=session)
        text = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
        return json.loads(text)

    ask = {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": "task_x"}}
    assert (await send(ask))["error"]["code"] == -32601
    # The 2025-11-25 way to ask for a task is ignored: the call runs as an ordinary one.
    call = {"name": GENERATE, "arguments": arguments(wait_seconds=0), "task": {"ttl": 60000}}
    answered = await send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call})
    result = answered["result"]
    assert "task" not in result
    assert "taskId" not in result
    assert result["structuredContent"]["status"] in ("queued", "running", "completed")


async def test_an_sdk_client_follows_a_task_over_streamable_http(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    settings = make_settings(tmp_path / "home", base_url=loopback_emulator)
    app = build_server(settings).streamable_http_app()
    extension = TasksClient()
    with anyio.fail_after(30):
        async with serve_asgi(app) as base, Client(f"{base}/mcp", extensions=[extension]) as c:
            result = await c.call_tool(GENERATE, arguments())
    record = structured(result)
    assert record["status"] == "completed"
    assert record["video_url"]
    assert any(block.type == "resource_link" for block in result.content)
    assert len(extension.created) == 1


async def test_a_cancel_while_the_submission_is_unconfirmed_says_it_may_be_billed(
    tasks_client: tuple[Client, TasksClient], emulator: Emulator
) -> None:
    client, _ = tasks_client
    emulator.inject("vx.submit", Fault.drop())  # Vtrix has the job, its answer is lost
    task = await start_task(client, "wan22_i2v_flash_generate_video", minimal_arguments("wan22_i2v_flash"))
    await until(client, task.task_id, lambda s: (s.status_message or "").startswith("submission unconfirmed"))
    await cancel_task(client, task.task_id)
    state = await get_task(client, task.task_id)
    assert state.status == "working"
    assert "if the provider has the job, it cannot be stopped there" in (state.status_message or "")
    assert len(emulator.submissions()) == 1
