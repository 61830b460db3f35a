"""Crashes: the real server over stdio, killed with SIGKILL at chosen moments of its jobs' lives.

Each cycle starts ``python -m server serve`` (same ``WAN_MCP_HOME`` every time), starts a few
jobs (random models, images and waits), waits for one moment of their lives (each moment in
turn), adds a random pause of up to ``JITTER`` seconds and kills the process with SIGKILL. The
moments are made likely with the emulator: a delayed image upload (before the submit), a delayed
or trickled submit answer (during it), the first status poll (just after it), held jobs (while
polling) and a trickled video (while downloading). Every
restart must answer at once; after the last cycle a final server is asked for every job in the
journal and every id a client ever received.

The promise checked: no job lost (every id a client received is found and ends completed or
failed, or unconfirmed with its reason), no job submitted twice, no provider job that no journal
row accounts for, and no half-written file under a final name: the videos folder holds only
``.mp4`` files that decode, with their ``.jpg`` poster and ``.json`` sidecar.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from bench.common import (
    CAT_URL,
    MODELS,
    WAVESPEED_MODELS,
    Ledger,
    is_crash,
    journal,
    new_emulator,
    png_data_uri,
    reconcile_ledger,
    record_of,
    stdio_params,
    stdio_session,
    text_of,
)
from server.sandbox import Emulator, Fault, RecordedCall, serve_emulator

MOMENTS = ("before submit", "during submit", "after submit", "while polling", "while downloading")
JITTER = 0.15
# Longest wait for a moment to come, for a call to end, for a server to answer.
MOMENT_LIMIT = 20.0
CALL_LIMIT = 60.0
_SUBMIT_ROUTE = {"wavespeed": "ws.submit", "vtrix": "vx.submit"}
_POLL_ROUTE = {"wavespeed": "ws.result", "vtrix": "vx.task"}


@dataclass
class FileCheck:
    """What the videos folder holds after the run."""

    videos: int = 0
    undecodable: list[str] = field(default_factory=list[str])
    strays: list[str] = field(default_factory=list[str])
    temp_leftovers: list[str] = field(default_factory=list[str])


@dataclass
class CrashReport:
    """What a crash run did and every promise it saw broken (``problems``)."""

    cycles: int = 0
    kills: Counter[str] = field(default_factory=Counter[str])
    survived: int = 0
    received: set[str] = field(default_factory=set[str])
    outcomes: Counter[str] = field(default_factory=Counter[str])
    ledger: Ledger = field(default_factory=lambda: Ledger(0, 0))
    files: FileCheck = field(default_factory=FileCheck)
    lost: list[str] = field(default_factory=list[str])
    problems: list[str] = field(default_factory=list[str])
    startup_seconds: list[float] = field(default_factory=list[float])
    seconds: float = 0.0


@dataclass
class _Cycle:
    number: int
    moment: str
    rng: random.Random
    emulator: Emulator
    report: CrashReport
    arrived: anyio.Event = field(default_factory=anyio.Event)

    def when(self, route: str, count: int = 1) -> None:
        """Make ``arrived`` fire at the ``count``-th request to ``route``."""
        seen = 0

        def watch(call: RecordedCall) -> None:
            nonlocal seen
            if call.route == route:
                seen += 1
                if seen >= count:
                    self.arrived.set()

        self.emulator.watchers.append(watch)


async def run_crash_scenario(
    home: Path, *, cycles: int = 12, jobs_per_cycle: int = 3, seed: int = 11, emulator: Emulator | None = None
) -> CrashReport:
    """Kill and restart the stdio server ``cycles`` times, then check every job (see the module)."""
    started = time.perf_counter()
    report = CrashReport(cycles=cycles)
    rng = random.Random(seed)
    emulator = emulator or new_emulator()
    async with serve_emulator(emulator) as base_url:
        params = stdio_params(home, base_url)
        for number in range(cycles):
            cycle = _Cycle(
                number, MOMENTS[number % len(MOMENTS)], random.Random(rng.random()), emulator, report
            )
            await _one_cycle(params, cycle, jobs_per_cycle)
        rows = journal(home / "jobs.sqlite3")
        known = {row.id for row in rows}
        report.lost.extend(
            f"job {job_id} was answered to a client but is not in the journal"
            for job_id in sorted(report.received - known)
        )
        emulator.hold = False
        emulator.clear_faults()
        await _final_check(params, report, sorted(known | report.received))
    rows = journal(home / "jobs.sqlite3")
    report.ledger = reconcile_ledger(emulator, rows)
    report.lost.extend(report.ledger.orphans)
    for row in rows:
        report.outcomes[row.status] += 1
        if row.status in ("queued", "running"):
            report.problems.append(f"{row.id} is still {row.status} after the final check")
        if row.status in ("failed", "unconfirmed") and not (row.error or "").strip():
            report.problems.append(f"{row.id} is {row.status} with no reason")
    report.files = check_videos(home / "videos")
    report.seconds = time.perf_counter() - started
    return report


async def _one_cycle(params: StdioServerParameters, cycle: _Cycle, jobs: int) -> None:
    emulator, rng, report = cycle.emulator, cycle.rng, cycle.report
    emulator.watchers.clear()
    emulator.clear_faults()
    emulator.hold = cycle.moment == "while polling"
    begun = time.perf_counter()
    async with stdio_session(params) as (client, process):
        # The restarted server answers, and finds what the killed one was doing.
        earlier = sorted(report.received)
        answer = await _call(client, "list_jobs", {"limit": 5}, report)
        report.startup_seconds.append(time.perf_counter() - begun)
        if answer is None or answer.is_error:
            report.problems.append(f"cycle {cycle.number}: the restarted server did not answer list_jobs")
        elif cycle.number > 0:
            report.survived += 1
        for job_id in rng.sample(earlier, min(2, len(earlier))):
            await _call(client, "get_result", {"job_id": job_id, "wait_seconds": 0}, report)
        specs = [_job(cycle, k) for k in range(jobs)]
        _arm(cycle, specs[0])
        async with anyio.create_task_group() as group:
            for tool, arguments in specs:
                group.start_soon(_start_job, client, report, tool, arguments)
            with anyio.move_on_after(MOMENT_LIMIT):
                await cycle.arrived.wait()
            if not cycle.arrived.is_set():
                report.problems.append(f"cycle {cycle.number}: the moment '{cycle.moment}' never came")
            # A random moment just after the arranged one.
            await anyio.sleep(rng.uniform(0, JITTER))
            os.kill(process.pid, signal.SIGKILL)
            report.kills[cycle.moment] += 1
    emulator.watchers.clear()


def _job(cycle: _Cycle, k: int) -> tuple[str, dict[str, Any]]:
    """One generate call of the cycle; the first is the one the moment is arranged around."""
    rng = cycle.rng
    model = rng.choice(WAVESPEED_MODELS if cycle.moment == "before submit" and k == 0 else MODELS)
    image = CAT_URL
    if model in WAVESPEED_MODELS and ((k == 0 and cycle.moment == "before submit") or rng.random() < 0.2):
        # A unique picture, so it is uploaded (an identical one would reuse the earlier upload).
        image = png_data_uri(64, (cycle.number * 9 % 256, k * 60, rng.randrange(256)))
    arguments = {
        "image": image,
        "prompt": f"crash cycle {cycle.number} job {k}: a cat turns its head",
        "wait_seconds": rng.choice((0, 0, 5)),
    }
    return f"{model}_generate_video", arguments


def _arm(cycle: _Cycle, first: tuple[str, dict[str, Any]]) -> None:
    """Arrange for ``cycle.moment`` to happen, and for ``cycle.arrived`` to fire when it does."""
    emulator, rng = cycle.emulator, cycle.rng
    model = first[0].removesuffix("_generate_video")
    provider = "wavespeed" if model in WAVESPEED_MODELS else "vtrix"
    match cycle.moment:
        case "before submit":
            route = "ws.upload_ticket"
            emulator.inject(route, Fault.delay(MOMENT_LIMIT * 3))
            cycle.when(route)
        case "during submit":
            route = _SUBMIT_ROUTE[provider]
            # Either the provider never gets to act, or it acts and its answer trickles.
            slow = rng.random() < 0.5
            emulator.inject(route, Fault.slow(MOMENT_LIMIT * 3) if slow else Fault.delay(MOMENT_LIMIT * 3))
            cycle.when(route)
        case "after submit":
            cycle.when(_POLL_ROUTE[provider])
        case "while polling":
            cycle.when(_POLL_ROUTE[provider], count=rng.randint(2, 8))
        case _:
            # A tenth of the video every 0.1 s: the kill lands while the file is being written.
            emulator.inject("file", Fault.slow(1.0, chunks=10))
            cycle.when("file")


async def _start_job(client: Client, report: CrashReport, tool: str, arguments: dict[str, Any]) -> None:
    result = await _call(client, tool, arguments, report)
    record = None if result is None else record_of(result)
    if record is not None and "job_id" in record:
        report.received.add(str(record["job_id"]))


async def _call(
    client: Client, tool: str, arguments: dict[str, Any], report: CrashReport | None = None
) -> Any:
    """One call that may be cut short by the kill: None when the connection went away."""
    with anyio.move_on_after(CALL_LIMIT):
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError:
            return None
        if report is not None and result.is_error and is_crash(text_of(result)):
            report.problems.append(f"{tool} crashed: {text_of(result)!r}")
        return result
    if report is not None:
        report.problems.append(f"{tool} did not answer in {CALL_LIMIT:.0f} s")
    return None


async def _final_check(params: StdioServerParameters, report: CrashReport, job_ids: list[str]) -> None:
    """A last server, never killed, asked for every job until it ends."""
    async with stdio_session(params) as (client, _):
        answer = await _call(client, "list_jobs", {"limit": 5}, report)
        if answer is None or answer.is_error:
            report.problems.append("the final server did not answer list_jobs")
        else:
            report.survived += 1
        limiter = anyio.CapacityLimiter(16)

        async def settle(job_id: str) -> None:
            async with limiter:
                result = await _call(client, "get_result", {"job_id": job_id, "wait_seconds": 30}, report)
            if result is None:
                report.lost.append(f"get_result for {job_id} never answered")
                return
            record = record_of(result)
            if record is None or record.get("job_id") != job_id:
                report.lost.append(f"get_result could not find {job_id}: {text_of(result)!r}")

        async with anyio.create_task_group() as group:
            for job_id in job_ids:
                group.start_soon(settle, job_id)


def check_videos(folder: Path) -> FileCheck:
    """Every file in the videos folder: final MP4s that decode, their posters and sidecars."""
    check = FileCheck()
    if not folder.exists():
        return check
    names = {entry.name for entry in folder.iterdir()}
    for name in sorted(names):
        path = folder / name
        if name.startswith("."):
            check.temp_leftovers.append(name)
        elif name.endswith(".mp4"):
            check.videos += 1
            problem = decode_problem(path)
            if problem:
                check.undecodable.append(f"{name}: {problem}")
        elif name.endswith((".jpg", ".json")):
            stem = name.removesuffix(".sheet.jpg") if name.endswith(".sheet.jpg") else name.rsplit(".", 1)[0]
            if f"{stem}.mp4" not in names:
                check.strays.append(f"{name} has no video beside it")
        else:
            check.strays.append(name)
    return check


def decode_problem(path: Path) -> str | None:
    """Why PyAV cannot decode every frame of ``path`` (None when it can)."""
    import av
    from av.error import FFmpegError

    try:
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
    except (FFmpegError, ValueError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if frames > 0 else "no frames"
