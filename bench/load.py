"""Load: hundreds of concurrent generate calls and get_result waits, over stdio and Streamable HTTP.

Each run warms the server up, takes its memory as the baseline, then does two rounds of ``calls``
concurrent calls while the provider holds every job: generate calls that wait, then generate
calls that return at once followed by as many get_result calls that wait. Once every call has had
its first progress notification (so every one of them is waiting), the jobs are released.

The promise checked: every call that waited got progress notifications, its last one "done",
and a completed result; the event loop never stalled (over HTTP the server shares this process's
loop, where a probe task measures its worst lag; over stdio the worst round trip of a cheap call
made during the load stands for it); and the server's memory comes back to its baseline.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil
from mcp import Client
from mcp.shared.exceptions import MCPError

from bench.common import (
    CAT_URL,
    MODELS,
    Countdown,
    ProgressLog,
    bench_settings,
    new_emulator,
    probing,
    record_of,
    rss_of,
    serve_http,
    stdio_params,
    stdio_session,
    text_of,
)
from server.app import build_server
from server.sandbox import Emulator, serve_emulator
from server.settings import PollPolicy

# Calls per MCP client over HTTP (each client's connection pool holds 100).
CALLS_PER_HTTP_CLIENT = 40
ROUND_LIMIT = 120.0
# Polls a second apart, at most 50 a second to each provider (the server paces them; its default
# is 10): hundreds of held jobs polled unpaced would measure the emulator drowning, not the server.
POLL_INTERVAL = 1.0
PROVIDER_RATE = 50.0


@dataclass
class LoadReport:
    """What a load run did and every promise it saw broken (``problems``)."""

    transport: str
    calls: int = 0
    completed: int = 0
    progress_events: int = 0
    problems: list[str] = field(default_factory=list[str])
    worst_lag: float = 0.0
    worst_round_trip: float = 0.0
    baseline_rss: int = 0
    peak_rss: int = 0
    final_rss: int = 0
    seconds: float = 0.0

    @property
    def rss_growth(self) -> int:
        return self.final_rss - self.baseline_rss


Call = Callable[[str, dict[str, Any], ProgressLog | None], Awaitable[Any]]


async def run_load_stdio(home: Path, *, calls: int = 100) -> LoadReport:
    """The load rounds against ``python -m server serve`` over stdio (see the module)."""
    report = LoadReport("stdio")
    started = time.perf_counter()
    emulator = new_emulator(fps=1, scale=0.05)
    async with (
        serve_emulator(emulator) as base_url,
        stdio_session(
            stdio_params(
                home, base_url, poll_interval=POLL_INTERVAL, WAN_MCP_PROVIDER_RATE=f"{PROVIDER_RATE:g}"
            )
        ) as (client, process),
    ):

        async def call(tool: str, arguments: dict[str, Any], progress: ProgressLog | None) -> Any:
            return await client.call_tool(tool, arguments, progress_callback=progress)

        await _rounds(report, emulator, call, calls, process)
    report.seconds = time.perf_counter() - started
    return report


async def run_load_http(home: Path, *, calls: int = 100) -> LoadReport:
    """The load rounds against the server on Streamable HTTP in this process (see the module)."""
    report = LoadReport("streamable-http")
    started = time.perf_counter()
    emulator = new_emulator(fps=1, scale=0.05)
    poll = PollPolicy(
        interval=POLL_INTERVAL,
        max_interval=POLL_INTERVAL,
        provider_rate=PROVIDER_RATE,
        retry_base=0.05,
        retry_cap=0.5,
    )
    settings = bench_settings(home, poll=poll)
    app = build_server(settings, transport=emulator.transport()).streamable_http_app()
    try:
        async with serve_http(app) as url, AsyncExitStack() as stack:
            clients: list[Client] = []
            for _ in range(max(1, -(-calls // CALLS_PER_HTTP_CLIENT))):
                clients.append(await stack.enter_async_context(Client(url)))
            turn = 0

            async def call(tool: str, arguments: dict[str, Any], progress: ProgressLog | None) -> Any:
                nonlocal turn
                turn += 1
                client = clients[turn % len(clients)]
                return await client.call_tool(tool, arguments, progress_callback=progress)

            await _rounds(report, emulator, call, calls, None)
    except Exception as exc:  # noqa: BLE001 - a transport failure is a finding of the run, not its end
        report.problems.append(f"an HTTP client failed: {exc!r} {getattr(exc, 'exceptions', '')}")
    report.seconds = time.perf_counter() - started
    return report


async def _rounds(
    report: LoadReport, emulator: Emulator, call: Call, calls: int, process: psutil.Process | None
) -> None:
    """Warm up with a round as big (memory grows to what this much concurrency needs), take the
    baseline, run both rounds under the probes, take the final memory."""
    await _generate_and_wait(report, emulator, call, calls, "warm-up generate", count=False)
    emulator.calls.clear()
    report.baseline_rss = _settled_rss(process)
    async with probing(0.01, process or psutil.Process()) as probe, _round_trips(report, call):
        await _generate_and_wait(report, emulator, call, calls, "generate")
        await _get_result_waits(report, emulator, call, calls)
    # The emulator's own record of requests is the harness's memory, not the server's.
    emulator.calls.clear()
    report.worst_lag = probe.worst_lag
    report.peak_rss = probe.peak_rss
    report.final_rss = _settled_rss(process)


async def _generate_and_wait(
    report: LoadReport, emulator: Emulator, call: Call, calls: int, name: str, *, count: bool = True
) -> None:
    """``calls`` generate calls that wait; the provider holds their jobs until all are waiting."""
    emulator.hold = True
    waiting = Countdown(calls)
    logs = [ProgressLog(on_first=waiting.tick) for _ in range(calls)]

    async def one(n: int) -> None:
        arguments = {"image": CAT_URL, "prompt": f"{name} {n}: waves roll in", "wait_seconds": 90}
        result = await _bounded(report, call, f"{MODELS[n % len(MODELS)]}_generate_video", arguments, logs[n])
        _judge(report, f"{name} call {n}", result, logs[n], count)

    await _release_when_all_wait(report, emulator, waiting, [lambda n=n: one(n) for n in range(calls)], name)


async def _get_result_waits(
    report: LoadReport, emulator: Emulator, call: Call, calls: int, *, count: bool = True
) -> None:
    """``calls`` generate calls that return at once, then one waiting get_result call per job."""
    emulator.hold = True
    job_ids: list[str] = []

    async def start(n: int) -> None:
        prompt = f"get_result {n} ({'counted' if count else 'warm-up'}): leaves fall"
        arguments = {"image": CAT_URL, "prompt": prompt, "wait_seconds": 0}
        result = await _bounded(report, call, f"{MODELS[n % len(MODELS)]}_generate_video", arguments, None)
        record = None if result is None else record_of(result)
        if record is None or "job_id" not in record:
            report.problems.append(f"generate {n} (wait 0) gave no job: {result and text_of(result)!r}")
            return
        job_ids.append(str(record["job_id"]))

    async with anyio.create_task_group() as group:
        for n in range(calls):
            group.start_soon(start, n)
    waiting = Countdown(len(job_ids))
    logs = [ProgressLog(on_first=waiting.tick) for _ in job_ids]

    async def wait(n: int) -> None:
        arguments = {"job_id": job_ids[n], "wait_seconds": 90}
        result = await _bounded(report, call, "get_result", arguments, logs[n])
        _judge(report, f"get_result {n}", result, logs[n], count)

    tasks = [lambda n=n: wait(n) for n in range(len(job_ids))]
    await _release_when_all_wait(report, emulator, waiting, tasks, "get_result")


async def _release_when_all_wait(
    report: LoadReport,
    emulator: Emulator,
    waiting: Countdown,
    tasks: Sequence[Callable[[], Coroutine[Any, Any, None]]],
    name: str,
) -> None:
    async with anyio.create_task_group() as group:
        for task in tasks:
            group.start_soon(task)
        with anyio.move_on_after(ROUND_LIMIT):
            await waiting.done.wait()
        if not waiting.done.is_set():
            report.problems.append(f"{name}: {waiting.count} call(s) never reported progress")
        emulator.release()
        emulator.hold = False


async def _bounded(
    report: LoadReport, call: Call, tool: str, arguments: dict[str, Any], progress: ProgressLog | None
) -> Any:
    with anyio.move_on_after(ROUND_LIMIT):
        try:
            return await call(tool, arguments, progress)
        except MCPError as exc:
            report.problems.append(f"{tool} raised {exc!r}")
            return None
    report.problems.append(f"{tool} did not answer in {ROUND_LIMIT:.0f} s")
    return None


def _judge(report: LoadReport, name: str, result: Any, progress: ProgressLog, count: bool) -> None:
    if not count:
        return
    report.calls += 1
    report.progress_events += len(progress.events)
    record = None if result is None else record_of(result)
    if record is None or record.get("status") != "completed":
        report.problems.append(f"{name} did not complete: {result and text_of(result)!r}")
        return
    report.completed += 1
    if progress.last_message != "done":
        report.problems.append(f"{name} completed but its last progress was {progress.last_message!r}")


@asynccontextmanager
async def _round_trips(report: LoadReport, call: Call) -> AsyncIterator[None]:
    """Time a free estimate call again and again while the block runs; keep the worst."""

    async def loop() -> None:
        while True:
            begun = anyio.current_time()
            await call(f"{MODELS[0]}_estimate_cost", {"duration": 8}, None)
            report.worst_round_trip = max(report.worst_round_trip, anyio.current_time() - begun)
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as group:
        group.start_soon(loop)
        try:
            yield
        finally:
            group.cancel_scope.cancel()


def _settled_rss(process: psutil.Process | None) -> int:
    """RSS once garbage is collected (in this process; a server process collects on its own)."""
    if process is None:
        gc.collect()
    return rss_of(process or psutil.Process())
