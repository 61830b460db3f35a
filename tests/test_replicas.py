"""Several server processes on one journal, driven through real MCP clients over HTTP.

Three replicas (``wan-video-mcp serve --transport http`` subprocesses) share a real PostgreSQL
started by the test session and one emulator on loopback. They prove: any replica answers any
request (a round-robin proxy, no affinity), a call waiting on one replica wakes within a second of
another finishing the job, a SIGKILLed replica's jobs are taken over within the lease, money rules
hold across replicas, and WaveSpeed webhooks are verified, deduplicated and confirmed. Then two
stdio servers sharing one SQLite home.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult
from psycopg.rows import dict_row

from bench.common import serve_http
from bench.fleet import Replica, RoundRobin, fleet, replica_env
from server.sandbox import Emulator
from tests.conftest import VX_KEY, WS_KEY
from tests.mcp_helpers import ERAS, ProgressLog, minimal_arguments, stdio_server, structured, text_of

pytestmark = pytest.mark.anyio

LEASE = 3.0
KEYS = (WS_KEY, VX_KEY)
FAST = "wan22_i2v_480p_ultra_fast"


class FirstProgress(ProgressLog):
    """A progress log that says when the first notification arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.started = anyio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        await super().__call__(progress, total, message)
        self.started.set()


def downloads(emulator: Emulator, provider_job_id: str | None = None) -> int:
    return sum(
        1
        for c in emulator.calls
        if c.route == "file"
        and c.path.startswith("/sandbox/files/")
        and (provider_job_id is None or c.path == f"/sandbox/files/{provider_job_id}.mp4")
    )


def status_reads(emulator: Emulator, provider_job_id: str) -> int:
    return sum(1 for c in emulator.calls if c.route == "ws.result" and provider_job_id in c.path)


def row(dsn: str, job_id: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cursor:
        found = cursor.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return dict(found)


def holder(replicas: list[Replica], dsn: str, job_id: str) -> Replica | None:
    owner = row(dsn, job_id)["lease_owner"] or ""
    return next((r for r in replicas if f":{r.pid}:" in owner), None)


async def generate(
    url: str, prompt: str, *, era: str = "auto", wait: float = 0, **extra: Any
) -> dict[str, Any]:
    async with Client(url, mode=era) as client:  # type: ignore[arg-type]
        result = await client.call_tool(
            f"{FAST}_generate_video",
            {**minimal_arguments(FAST), "prompt": prompt, "wait_seconds": wait, **extra},
        )
    return structured(result)


@pytest.fixture
async def replicas(
    tmp_path: Path, postgres_dsn: str, emulator: Emulator, loopback_emulator: str
) -> AsyncIterator[list[Replica]]:
    env = replica_env(tmp_path / "home", loopback_emulator, postgres_dsn, lease_seconds=LEASE, keys=KEYS)
    with anyio.fail_after(60):
        async with fleet(3, env, tmp_path / "logs") as started:
            yield started


@pytest.mark.parametrize("era", ERAS)
async def test_any_replica_answers_any_request_behind_a_round_robin_proxy(
    era: str, replicas: list[Replica], emulator: Emulator
) -> None:
    proxy = RoundRobin([r.base for r in replicas])
    try:
        with anyio.fail_after(60):
            async with serve_http(proxy) as url, Client(url, mode=era) as client:  # type: ignore[arg-type]
                first = structured(
                    await client.call_tool(
                        f"{FAST}_generate_video", {**minimal_arguments(FAST), "wait_seconds": 0}
                    )
                )
                progress = ProgressLog()
                done = structured(
                    await client.call_tool(
                        "get_result",
                        {"job_id": first["job_id"], "wait_seconds": 30},
                        progress_callback=progress,
                    )
                )
                listed = await client.list_tools()
    finally:
        await proxy.aclose()
    assert done["status"] == "completed", done
    assert progress.messages[-1] == "done"
    assert listed.tools
    assert len(set(proxy.sent)) == 3, proxy.sent
    assert len(emulator.submissions()) == 1
    assert downloads(emulator) == 1


async def test_a_call_waiting_on_one_replica_wakes_within_a_second_of_another_finishing_the_job(
    replicas: list[Replica], emulator: Emulator, postgres_dsn: str
) -> None:
    emulator.hold = True
    with anyio.fail_after(60):
        job = await generate(replicas[0].url, "wake-up")
        owner = holder(replicas, postgres_dsn, job["job_id"])
        assert owner is replicas[0]
        progress = FirstProgress()
        returned: list[float] = []

        async def wait_elsewhere() -> None:
            async with Client(replicas[2].url) as client:
                result = await client.call_tool(
                    "get_result", {"job_id": job["job_id"], "wait_seconds": 40}, progress_callback=progress
                )
            returned.append(time.time())
            assert structured(result)["status"] == "completed", text_of(result)

        async with anyio.create_task_group() as group:
            group.start_soon(wait_elsewhere)
            await progress.started.wait()  # the waiter is in place once it reported progress
            emulator.release()
    finished = row(postgres_dsn, job["job_id"])["finished_at"]
    assert returned[0] - finished < 1.0
    assert progress.messages[-1] == "done"
    assert downloads(emulator) == 1


async def test_a_killed_replicas_jobs_are_taken_over_within_the_lease_and_downloaded_once(
    replicas: list[Replica], emulator: Emulator, postgres_dsn: str
) -> None:
    emulator.hold = True
    with anyio.fail_after(60):
        jobs = [await generate(replicas[0].url, f"takeover {n}") for n in range(3)]
        assert all(holder(replicas, postgres_dsn, j["job_id"]) is replicas[0] for j in jobs)
        replicas[0].kill()
        killed = time.monotonic()
        emulator.release()
        taken: dict[str, float] = {}
        while len(taken) < len(jobs):
            for job in jobs:
                if (
                    job["job_id"] not in taken
                    and holder(replicas[1:], postgres_dsn, job["job_id"]) is not None
                ):
                    taken[job["job_id"]] = time.monotonic() - killed
            await anyio.sleep(0.05)
        async with Client(replicas[1].url) as client:
            for job in jobs:
                done = structured(
                    await client.call_tool("get_result", {"job_id": job["job_id"], "wait_seconds": 30})
                )
                assert done["status"] == "completed", done
    # Within the lease time; a little slack for a loaded machine reading the journal here.
    assert max(taken.values()) < LEASE + 0.5, taken
    assert len(emulator.submissions()) == 3
    for job in emulator.submissions():
        assert downloads(emulator, job.id) == 1


async def test_the_budget_holds_across_replicas(
    tmp_path: Path, postgres_dsn: str, emulator: Emulator, loopback_emulator: str
) -> None:
    env = replica_env(tmp_path / "home", loopback_emulator, postgres_dsn, keys=KEYS) | {
        "WAN_MCP_BUDGET_USD": "0.50"
    }
    results: list[str] = []
    with anyio.fail_after(90):
        async with fleet(3, env, tmp_path / "logs") as started, AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(r.url)) for r in started]

            async def call(n: int) -> None:
                result = await clients[n % 3].call_tool(
                    f"{FAST}_generate_video",
                    {**minimal_arguments(FAST), "prompt": f"budget race {n}", "wait_seconds": 0},
                )
                results.append("refused" if result.is_error else structured(result)["status"])

            async with anyio.create_task_group() as group:
                for n in range(50):
                    group.start_soon(call, n)
    assert results.count("refused") == 40, results
    assert len(emulator.submissions()) == 10


async def test_an_identical_call_to_two_replicas_returns_one_job(
    replicas: list[Replica], emulator: Emulator
) -> None:
    found: list[str] = []

    async def call(replica: Replica) -> None:
        found.append((await generate(replica.url, "the very same request"))["job_id"])

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(call, replicas[0])
            group.start_soon(call, replicas[1])
    assert len(set(found)) == 1
    assert len(emulator.submissions()) == 1


@pytest.fixture
async def webhook_replicas(
    tmp_path: Path, postgres_dsn: str, emulator: Emulator, loopback_emulator: str
) -> AsyncIterator[list[Replica]]:
    env = replica_env(tmp_path / "home", loopback_emulator, postgres_dsn, lease_seconds=LEASE, keys=KEYS)
    with anyio.fail_after(60):
        async with fleet(2, env, tmp_path / "logs", webhooks=True) as started:
            yield started


async def test_a_webhook_completes_the_job_with_one_status_read(
    webhook_replicas: list[Replica], emulator: Emulator, postgres_dsn: str
) -> None:
    emulator.job_seconds = 0.5
    with anyio.fail_after(30):
        done = await generate(webhook_replicas[1].url, "called back", wait=20)
    assert done["status"] == "completed", done
    (job,) = emulator.submissions()
    assert str(job.webhook).endswith("/webhooks/wavespeed")
    assert [status for _, status in emulator.webhook_deliveries] == [202]
    # The submit's answer, then the one read that confirms the callback: no polling in between.
    assert status_reads(emulator, job.id) == 1
    assert downloads(emulator, job.id) == 1
    assert row(postgres_dsn, done["job_id"])["webhook"] == 1


async def test_forged_stale_and_replayed_webhooks_are_refused_and_change_nothing(
    webhook_replicas: list[Replica], emulator: Emulator, postgres_dsn: str
) -> None:
    emulator.hold = True
    emulator.send_webhooks = False
    marker = "body-marker-7f3a"
    with anyio.fail_after(30):
        record = await generate(webhook_replicas[0].url, marker)
        (job,) = emulator.submissions()
        emulator.release()  # done at the provider, but nobody has been told
        before = row(postgres_dsn, record["job_id"])
        reads = status_reads(emulator, job.id)
        url = f"{webhook_replicas[1].base}/webhooks/wavespeed"

        headers, body = emulator.signed_webhook(job)
        forged = {**headers, "webhook-signature": "v3," + "0" * 64}
        assert (await emulator.deliver_webhook(job, url=url, headers=forged, body=body)).status_code == 401
        tampered = body.replace(b"completed", b"failed")
        assert (
            await emulator.deliver_webhook(job, url=url, headers=headers, body=tampered)
        ).status_code == 401
        stale_headers, stale_body = emulator.signed_webhook(job, timestamp=int(time.time()) - 301)
        stale = await emulator.deliver_webhook(job, url=url, headers=stale_headers, body=stale_body)
        assert stale.status_code == 400
        after = row(postgres_dsn, record["job_id"])
        assert (after["status"], after["video_url"], after["updated_at"]) == (
            before["status"],
            before["video_url"],
            before["updated_at"],
        )
        assert status_reads(emulator, job.id) == reads

        valid = await emulator.deliver_webhook(job, url=url, headers=headers, body=body)
        assert valid.status_code == 202
        replay = await emulator.deliver_webhook(job, url=url, headers=headers, body=body)
        assert replay.status_code == 409
        async with Client(webhook_replicas[1].url) as client:
            done = structured(
                await client.call_tool("get_result", {"job_id": record["job_id"], "wait_seconds": 20})
            )
    assert done["status"] == "completed"
    assert status_reads(emulator, job.id) == reads + 1
    assert downloads(emulator, job.id) == 1
    for replica in webhook_replicas:
        assert marker not in replica.log.read_text()


async def test_two_stdio_servers_sharing_one_home_follow_and_download_a_job_once(
    tmp_path: Path, emulator: Emulator, loopback_emulator: str
) -> None:
    home = tmp_path / "home"
    params = stdio_server(home, loopback_emulator, WAN_MCP_LEASE_SECONDS=str(LEASE))
    emulator.hold = True
    results: list[dict[str, Any]] = []
    with anyio.fail_after(60):
        async with Client(params) as first, Client(params) as second:
            record = structured(
                await first.call_tool(
                    f"{FAST}_generate_video", {**minimal_arguments(FAST), "wait_seconds": 0}
                )
            )
            progress = [FirstProgress(), FirstProgress()]

            async def wait(client: Client, log: ProgressLog) -> None:
                result = await client.call_tool(
                    "get_result", {"job_id": record["job_id"], "wait_seconds": 30}, progress_callback=log
                )
                results.append(structured(result))

            async with anyio.create_task_group() as group:
                group.start_soon(wait, first, progress[0])
                group.start_soon(wait, second, progress[1])
                for log in progress:
                    await log.started.wait()
                emulator.release()
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert len(emulator.submissions()) == 1
    assert downloads(emulator) == 1


@pytest.mark.parametrize("era", ERAS)
async def test_a_price_confirmation_crosses_replicas_with_shared_request_state_keys(
    era: str, tmp_path: Path, postgres_dsn: str, emulator: Emulator, loopback_emulator: str
) -> None:
    env = replica_env(tmp_path / "home", loopback_emulator, postgres_dsn, keys=KEYS) | {
        "WAN_MCP_CONFIRM_ABOVE_USD": "0.01",
        "WAN_MCP_REQUEST_STATE_KEYS": "k" * 40,
    }
    asked: list[str] = []

    async def approve(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    with anyio.fail_after(60):
        async with fleet(3, env, tmp_path / "logs") as started:
            proxy = RoundRobin([r.base for r in started])
            try:
                async with (
                    serve_http(proxy) as url,
                    Client(url, mode=era, elicitation_callback=approve) as client,
                ):  # type: ignore[arg-type]
                    arguments = {**minimal_arguments(FAST), "wait_seconds": 0}
                    result = await client.call_tool(f"{FAST}_generate_video", arguments)
                    if era == "legacy":
                        # Stateless legacy HTTP has no channel for the server to ask on: the tool
                        # says so, and the agent confirms with confirm_cost_usd instead.
                        assert result.is_error
                        assert "confirm_cost_usd=0.05" in text_of(result)
                        assert emulator.submissions() == []
                        result = await client.call_tool(
                            f"{FAST}_generate_video", {**arguments, "confirm_cost_usd": 0.05}
                        )
            finally:
                await proxy.aclose()
    assert not result.is_error, text_of(result)
    assert len(asked) == (1 if era == "auto" else 0)
    assert all("$0.05" in message for message in asked)
    assert len(emulator.submissions()) == 1
