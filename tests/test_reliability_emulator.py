"""The emulator knobs the reliability scenarios use: slow bodies, chaos, watchers, the record of
applied faults, clearing queued faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from server.sandbox import Emulator, Fault, RecordedCall, serve_emulator
from tests.conftest import WS_KEY

SUBMIT = "/api/v3/wavespeed-ai/wan-2.2/i2v-480p-ultra-fast"
BODY = {"image": "https://example.com/cat.png", "prompt": "a cat"}


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=emulator.transport(),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {WS_KEY}"},
        timeout=httpx.Timeout(1.0),
    ) as c:
        yield c


@pytest.mark.anyio
async def test_a_slow_body_inside_the_timeout_arrives_whole(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.inject("ws.submit", Fault.slow(0.2, chunks=4))
    with anyio.fail_after(5):
        response = await client.post(SUBMIT, json=BODY)
    assert response.status_code == 200
    assert response.json()["data"]["id"] in emulator.jobs


@pytest.mark.anyio
async def test_a_slow_body_past_the_timeout_is_a_read_timeout_after_the_work_was_done(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.inject("ws.submit", Fault.slow(5, chunks=2))
    with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
        await client.post(SUBMIT, json=BODY, timeout=0.3)
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
async def test_a_slow_body_over_a_socket_stops_when_the_client_hangs_up(emulator: Emulator) -> None:
    emulator.inject("ws.submit", Fault.slow(60, chunks=3))
    with anyio.fail_after(20):
        async with serve_emulator(emulator, shutdown_timeout=8) as base_url:
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {WS_KEY}"}
            ) as http:
                with pytest.raises(httpx.ReadTimeout):
                    await http.post(SUBMIT, json=BODY, timeout=0.3)
            hung_up = anyio.current_time()
        # A trickle still running would hold the graceful shutdown for its whole 8 s.
        assert anyio.current_time() - hung_up < 4
    assert len(emulator.submissions()) == 1


@pytest.mark.anyio
async def test_chaos_is_asked_only_when_no_fault_is_queued_and_every_fault_is_recorded(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    asked: list[str] = []

    def chaos(route: str) -> Fault | None:
        asked.append(route)
        return Fault.status(503)

    emulator.chaos = chaos
    emulator.inject("ws.submit", Fault.status(429, retry_after=1))
    first = await client.post(SUBMIT, json=BODY)
    second = await client.post(SUBMIT, json=BODY)
    emulator.chaos = None
    third = await client.post(SUBMIT, json=BODY)
    assert [first.status_code, second.status_code, third.status_code] == [429, 503, 200]
    assert asked == ["ws.submit"]
    assert emulator.applied_faults == [
        ("ws.submit", Fault.status(429, retry_after=1)),
        ("ws.submit", Fault.status(503)),
    ]


@pytest.mark.anyio
async def test_watchers_see_each_request_before_its_fault(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    seen: list[tuple[str, int]] = []

    def watch(call: RecordedCall) -> None:
        seen.append((call.route, len(emulator.applied_faults)))

    emulator.watchers.append(watch)
    emulator.inject("ws.submit", Fault.status(500))
    await client.post(SUBMIT, json=BODY)
    await client.get("/api/v3/balance")
    assert seen == [("ws.submit", 0), ("ws.balance", 1)]


@pytest.mark.anyio
async def test_clear_faults_forgets_queued_faults(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.inject("*", Fault.status(500), times=5)
    emulator.clear_faults()
    assert (await client.post(SUBMIT, json=BODY)).status_code == 200
