"""The per-provider request-rate cap: the bucket on a fake clock, its settings, and the runner's
polls against the emulator held to it."""

from __future__ import annotations

import bisect
import heapq
import random
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from server.app import build_server
from server.errors import ConfigError
from server.providers.limits import ProviderLimits, RateLimit
from server.sandbox import Emulator
from server.settings import DEFAULT_POLL, DEFAULT_PROVIDER_RATE, PollPolicy, Settings
from tests.conftest import make_settings
from tests.mcp_helpers import minimal_arguments, structured


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_each_window_takes_a_burst_and_the_rest_wait_for_the_next_ones() -> None:
    time = FakeTime()  # at 100.0: the start of a window of 2 / 8 = 0.25 s
    limit = RateLimit(8, burst=2, clock=time.clock)
    assert [limit.reserve() for _ in range(5)] == pytest.approx([0, 0, 0.25, 0.25, 0.5])
    time.now += 10  # idle: a window's worth at once again, no more
    assert [limit.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.25])


def test_a_place_can_be_taken_ahead() -> None:
    time = FakeTime()
    limit = RateLimit(10, burst=2, clock=time.clock)
    assert limit.reserve(5.0) == pytest.approx(5.0)
    assert limit.reserve(5.0) == pytest.approx(5.0)
    assert limit.reserve(5.0) == pytest.approx(5.2)  # that window is full
    assert limit.reserve() == 0  # places ahead do not hold back a request now


def test_no_window_of_time_gets_more_than_its_share_whatever_the_callers_do() -> None:
    rng = random.Random(5)
    time = FakeTime()
    rate, burst = 20.0, 4
    limit = RateLimit(rate, burst=burst, clock=time.clock)
    sent: list[float] = []
    for _ in range(2000):
        time.now += rng.choice([0.0, 0.0, 0.001, 0.01, 0.05, 0.3])
        sent.append(time.now + limit.reserve(rng.choice([0.0, 0.0, 0.1, 1.0])))
    period = burst / rate
    for k in (1, 2, 5, 20):
        assert most_in_any_window(sent, k * period) <= (k + 1) * burst


def test_retry_after_holds_the_provider_back() -> None:
    time = FakeTime()
    limit = RateLimit(10, burst=5, clock=time.clock)
    limit.hold(2.0)
    assert limit.reserve() == pytest.approx(2.5)  # the first window that starts after the 2 s


class StallingClock:
    """A fake clock for tasks running at once: it moves to the next wake-up once every task waits,
    and now and then stalls (jumps ahead), waking every sleeper due in the stall together at its
    end, as a busy event loop does."""

    def __init__(self, rng: random.Random) -> None:
        self.now = 100.0
        self.rng = rng
        self._due: list[tuple[float, int, anyio.Event]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        heapq.heappush(self._due, (self.now + seconds, id(event), event))
        await event.wait()

    async def run(self, until: float) -> None:
        while self.now < until:
            await anyio.wait_all_tasks_blocked()
            if not self._due:
                return
            at = self._due[0][0]
            if self.rng.random() < 0.2:
                at += self.rng.choice([0.33, 0.51, 0.77])
            self.now = max(self.now, at)
            while self._due and self._due[0][0] <= self.now:
                heapq.heappop(self._due)[2].set()


@pytest.mark.anyio
async def test_callers_woken_late_together_do_not_crowd_the_window_they_wake_in() -> None:
    rng = random.Random(7)
    time = StallingClock(rng)
    rate, burst = 20.0, 4  # windows of 0.2 s; a stall spans up to four of them
    limit = RateLimit(rate, burst=burst, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []

    async def poller() -> None:
        while time.now < 160:
            await limit.acquire(rng.choice([0.0, 0.1, 0.5, 1.0]))
            sent.append(time.now)

    async with anyio.create_task_group() as group:
        for _ in range(12):
            group.start_soon(poller)
        await time.run(until=160)
        group.cancel_scope.cancel()
    assert len(sent) > 0.5 * 60 * rate  # they do go out: over half of what 60 s allows, stalls and all
    period = burst / rate
    for k in (1, 2, 5):
        assert most_in_any_window(sent, k * period) <= (k + 1) * burst


@pytest.mark.anyio
async def test_acquire_sleeps_only_when_it_must() -> None:
    time = FakeTime()
    limit = RateLimit(2, burst=2, clock=time.clock, sleep=time.sleep)
    for _ in range(4):
        await limit.acquire()
    assert time.slept == pytest.approx([1.0])  # the third waits for the next 1 s window, the fourth joins it
    await limit.acquire(3.0)
    assert time.slept[-1] == pytest.approx(3.0)


@pytest.mark.anyio
async def test_providers_have_their_own_buckets_and_none_means_unlimited() -> None:
    limits = ProviderLimits(rate=1, burst=1)
    with anyio.fail_after(0.5):  # each provider's first request goes at once
        await limits.acquire("wavespeed")
        await limits.acquire("vtrix")
    unlimited = ProviderLimits(rate=None)
    unlimited.hold("wavespeed", 60)
    with anyio.fail_after(0.5):
        for _ in range(1000):
            await unlimited.acquire("wavespeed")


def test_the_rate_comes_from_the_environment() -> None:
    assert DEFAULT_POLL.provider_rate == DEFAULT_PROVIDER_RATE == 10
    assert PollPolicy().provider_rate is None  # explicit policies (the tests') are unpaced
    assert Settings.from_env({"WAN_MCP_PROVIDER_RATE": "25"}).poll.provider_rate == 25
    assert Settings.from_env({"WAN_MCP_PROVIDER_RATE": "0"}).poll.provider_rate is None
    with pytest.raises(ConfigError, match="WAN_MCP_PROVIDER_RATE"):
        Settings.from_env({"WAN_MCP_PROVIDER_RATE": "fast"})


class Counting(httpx.AsyncBaseTransport):
    """Passes requests on; sets ``enough`` once ``wanted`` status polls have been sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport, wanted: int) -> None:
        self.inner = inner
        self.wanted = wanted
        self.polls = 0
        self.enough = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/result"):
            self.polls += 1
            if self.polls >= self.wanted:
                self.enough.set()
        return await self.inner.handle_async_request(request)


def most_in_any_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_right(ordered, t + window) - i for i, t in enumerate(ordered))


@pytest.mark.anyio
async def test_the_runner_never_polls_a_provider_faster_than_its_limit(
    tmp_path: Path, emulator: Emulator
) -> None:
    # Interval 0: without the limit, six held jobs would be polled as fast as the loop can go.
    rate, burst, wanted = 80.0, 4, 60
    poll = PollPolicy(interval=0, max_interval=0, retry_base=0, retry_cap=0, heartbeat=0.2)
    settings = make_settings(
        tmp_path, poll=poll.model_copy(update={"provider_rate": rate, "provider_burst": burst})
    )
    emulator.hold = True
    transport = Counting(emulator.transport(), wanted)
    slug = "wan22_i2v_480p_ultra_fast"
    async with Client(build_server(settings, transport=transport)) as client:
        for n in range(6):
            arguments = minimal_arguments(slug, prompt=f"job {n}", wait_seconds=0)
            assert structured(await client.call_tool(f"{slug}_generate_video", arguments))["status"] in (
                "queued",
                "running",
            )
        with anyio.fail_after(10):
            await transport.enough.wait()
        times = [call.at for call in emulator.calls if call.route == "ws.result"][:wanted]
        emulator.release()
    # In any k windows' time (a window is burst / rate seconds), at most k + 1 windows' worth.
    period = burst / rate
    for k in (1, 2, 5, 10):
        assert most_in_any_window(times, k * period) <= (k + 1) * burst
    assert times[-1] - times[0] >= (wanted // burst - 2) * period  # the first and last may be partial
