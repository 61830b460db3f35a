"""Scale: 1,000 live jobs in one server process, its memory and CPU while they wait, and the request
rate each provider sees.

The server is the real command (``python -m server serve`` over stdio, its own process); the
emulator runs in this process on a loopback socket and holds every job, so all 1,000 stay live
(800 on WaveSpeed's four models, 200 on Vtrix). The emulator is served here with TCP_NODELAY:
``serve_emulator`` leaves Nagle's algorithm on, and as uvicorn writes an answer's head and body
apart, every answer then waits ~40 ms for a delayed ACK, which costs the client ~3 ms of CPU a
request in extra wakeups (measured: 4.3 ms against 1.2 ms a status poll); a provider's real
endpoint does not stall so, and the server is what is measured.

After the jobs are submitted and a settling pause, the server's resident memory (sampled every half
second, the highest kept) and its CPU time (user + system, psutil) are taken over a window, and the
emulator's record of status polls gives each provider's request rate.

Two servers, one after the other: the default (adaptive schedule, at most 10 polls/s per provider)
and, as the baseline, a fixed 1 s interval with no limit (what WaveSpeed's SDK does per job).

    .venv/bin/python bench/scale.py [--jobs 1000] [--window 60]
"""

from __future__ import annotations

import argparse
import bisect
import logging
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import anyio
import psutil
import uvicorn
from mcp import Client, StdioServerParameters

from server.catalog import load_catalog
from server.sandbox import Emulator
from server.settings import DEFAULT_POLL

KEY = "bench-key-0123456789"
CAT_URL = "https://example.com/cat.png"
SLUGS = [spec.slug for spec in load_catalog().select(None)]
POLL_ROUTES = {"ws.result": "wavespeed", "vx.task": "vtrix"}
MB = 1024 * 1024
RSS_TARGET_MB = 150
CPU_TARGET = 10.0


@dataclass
class Run:
    name: str
    env: dict[str, str]
    idle_rss: float = 0.0
    idle_cpu: float = 0.0
    submit_seconds: float = 0.0
    live: int = 0
    refused: int = 0
    rss: float = 0.0
    cpu: float = 0.0
    rates: dict[str, float] = field(default_factory=dict[str, float])
    peaks: dict[str, int] = field(default_factory=dict[str, int])


class _Uvicorn(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C stops the benchmark, not just its emulator


@asynccontextmanager
async def serve_nodelay(emulator: Emulator) -> AsyncIterator[str]:
    """``emulator`` on a free loopback port, TCP_NODELAY on; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = uvicorn.Config(
        emulator.app,
        log_config=None,
        access_log=False,
        log_level="warning",
        lifespan="off",
        http="h11",
        ws="none",
    )
    server = _Uvicorn(config)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


def server_params(home: Path, base_url: str, extra: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--log-level", "WARNING"],
        env={
            "WAVESPEED_API_KEY": KEY,
            "VTRIX_API_KEY": KEY,
            "WAVESPEED_BASE_URL": base_url,
            "VTRIX_BASE_URL": base_url,
            "WAN_MCP_HOME": str(home),
            "WAN_MCP_ALLOWED_DIRS": str(home),
            **extra,
        },
    )


async def measure(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """Highest RSS (MB) and CPU (% of one core) of ``process`` over ``seconds``."""
    start_cpu = sum(process.cpu_times()[:2])
    start = time.monotonic()
    highest = process.memory_info().rss
    while time.monotonic() - start < seconds:
        await anyio.sleep(0.5)
        highest = max(highest, process.memory_info().rss)
    used = sum(process.cpu_times()[:2]) - start_cpu
    return highest / MB, 100 * used / (time.monotonic() - start)


async def one_run(run: Run, jobs: int, window: float, settle: float, submit_limit: float) -> None:
    emulator = Emulator(wavespeed_key=KEY, vtrix_key=KEY)
    emulator.hold = True  # every job stays live until the run ends
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_nodelay(emulator) as base_url:
            me = psutil.Process()
            before = {p.pid for p in me.children()}
            params = server_params(Path(tmp) / "home", base_url, run.env)
            async with Client(params) as client:
                (server,) = [p for p in me.children() if p.pid not in before]
                await client.list_tools()
                await anyio.sleep(2)
                run.idle_rss, run.idle_cpu = await measure(server, 5)
                limiter = anyio.CapacityLimiter(20)
                started = time.monotonic()

                async def submit(n: int) -> None:
                    slug = SLUGS[n % len(SLUGS)]
                    arguments = {"image": CAT_URL, "prompt": f"job {n}: waves roll in", "wait_seconds": 0}
                    async with limiter:
                        result = await client.call_tool(f"{slug}_generate_video", arguments)
                    record = result.structured_content or {}
                    if record.get("status") in ("queued", "running"):
                        run.live += 1
                    else:
                        run.refused += 1

                with anyio.move_on_after(submit_limit):  # a server that cannot keep up is not waited for
                    async with anyio.create_task_group() as group:
                        for n in range(jobs):
                            group.start_soon(submit, n)
                run.submit_seconds = time.monotonic() - started
                print(
                    f"[{run.name}] {run.live} live after {run.submit_seconds:.0f} s; measuring",
                    file=sys.stderr,
                )
                await anyio.sleep(settle)
                begin = time.monotonic()
                run.rss, run.cpu = await measure(server, window)
                end = time.monotonic()
                polls: dict[str, list[float]] = {"wavespeed": [], "vtrix": []}
                for call in emulator.calls:
                    provider = POLL_ROUTES.get(call.route)
                    if provider is not None and begin <= call.at < end:
                        polls[provider].append(call.at)
                run.rates = {name: len(times) / (end - begin) for name, times in polls.items()}
                run.peaks = {name: most_in_a_second(times) for name, times in polls.items()}


def most_in_a_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_right(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


async def main_async(jobs: int, window: float, settle: float, submit_limit: float) -> None:
    runs = [
        Run("default: adaptive, <= 10 polls/s per provider", {}),
        Run(
            "baseline: fixed 1 s, no limit (SDK-like)",
            {"WAN_MCP_POLL_INTERVAL": "1", "WAN_MCP_PROVIDER_RATE": "0"},
        ),
    ]
    for run in runs:
        await one_run(run, jobs, window, settle, submit_limit)
    limit = DEFAULT_POLL.provider_rate
    burst = DEFAULT_POLL.provider_burst
    split = f"{jobs * 4 // 5} WaveSpeed, {jobs // 5} Vtrix"
    print(f"{date.today().isoformat()}, 2 cores; {jobs} live jobs per server ({split})")
    print(f"server = python -m server serve over stdio; window {window:.0f} s after a {settle:.0f} s pause")
    for run in runs:
        print(f"\n{run.name}")
        print(f"  idle, no jobs:       RSS {run.idle_rss:6.1f} MB   CPU {run.idle_cpu:5.1f}% of a core")
        stopped = f", stopped at the {submit_limit:.0f} s limit" if run.submit_seconds >= submit_limit else ""
        failed = f", {run.refused} not accepted" if run.refused else ""
        print(f"  submitting {jobs}:      {run.submit_seconds:5.1f} s ({run.live} live{failed}{stopped})")
        print(
            f"  {run.live} live, waiting: RSS {run.rss:6.1f} MB (target <= {RSS_TARGET_MB}) "
            f"CPU {run.cpu:5.1f}% of a core (target < {CPU_TARGET:.0f}%)"
        )
        for provider in ("wavespeed", "vtrix"):
            print(
                f"  {provider:9} status polls: {run.rates[provider]:7.1f}/s on average, "
                f"at most {run.peaks[provider]} in any 1 s"
            )
    default = runs[0]
    rate_ok = all(
        default.rates[p] <= (limit or 0) + 0.5 and default.peaks[p] <= (limit or 0) + burst
        for p in default.rates
    )
    print("\nTargets (default server):")
    print(f"  RSS {default.rss:.1f} MB <= {RSS_TARGET_MB} MB: {verdict(default.rss <= RSS_TARGET_MB)}")
    print(f"  CPU {default.cpu:.1f}% < {CPU_TARGET:.0f}% of one core: {verdict(default.cpu < CPU_TARGET)}")
    print(
        f"  polls per provider <= {limit:.0f}/s (+ burst {burst}): "
        f"{', '.join(f'{p} {default.rates[p]:.1f}/s, peak {default.peaks[p]}/1 s' for p in default.rates)}: "
        f"{verdict(rate_ok)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds between submitting and measuring")
    parser.add_argument("--submit-limit", type=float, default=60.0, help="seconds allowed for submitting")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    anyio.run(main_async, args.jobs, args.window, args.settle, args.submit_limit)


if __name__ == "__main__":
    main()
