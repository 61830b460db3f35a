"""Faults: many jobs through the in-memory MCP client while the provider misbehaves at a set rate.

Every request to a route that can fail meets a fault with probability ``rate``, chosen by a seeded
``random.Random``: 429 with and without Retry-After, 5xx, a timeout (a delay past the client's
read timeout), a connection reset after the work was done, a body that is not JSON, a slow body
(inside or past the timeout), a truncated download; some jobs fail at the provider. Then, as a
user would, every job is asked for until it ends: first with the faults still on, then twice with
the provider healthy again (the settings have no grace period before a lost submit the provider
never got is settled as not created, so each one is settled or adopted on the first ask).

The promise checked: every call is answered (nothing hangs, nothing crashes), every job ends
completed or failed with a reason (or ``unconfirmed`` with a reason, only for a Vtrix submit
whose answer was lost: Vtrix has no history to look it up in), the provider never got a request
twice, and every provider job belongs to exactly the journal row that asked for it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.shared.exceptions import MCPError

from bench.common import (
    CAT_URL,
    MODELS,
    VTRIX_MODELS,
    Ledger,
    bench_settings,
    is_crash,
    journal,
    new_emulator,
    png_data_uri,
    prompt_of,
    reconcile_ledger,
    record_of,
    text_of,
)
from server.app import build_server
from server.sandbox import Emulator, Fault

# Routes and the faults that make sense on each.
_CALLS = ("429 + Retry-After", "429", "5xx", "timeout", "connection reset", "malformed JSON", "slow body")
ROUTE_FAULTS: dict[str, tuple[str, ...]] = {
    "ws.submit": _CALLS,
    "vx.submit": _CALLS,
    "ws.result": _CALLS,
    "vx.task": _CALLS,
    "ws.history": _CALLS,
    "ws.upload_ticket": _CALLS,
    "ws.upload_put": ("5xx", "timeout", "connection reset"),
    "file": ("truncated download", "connection reset", "5xx", "timeout", "slow body"),
}
# Longest a single call may take before it counts as a hang.
CALL_LIMIT = 60.0
# How the runner says a lost submission matches more than one provider job.
AMBIGUOUS = "rather than guess"


def label(fault: Fault) -> str:
    """The table's name for a fault."""
    match fault.kind:
        case "status" if fault.code == 429:
            return "429 + Retry-After" if fault.retry_after is not None else "429"
        case "status":
            return "5xx"
        case "delay":
            return "timeout"
        case "drop":
            return "connection reset"
        case "malformed":
            return "malformed JSON"
        case "slow":
            return "slow body"
        case "truncate":
            return "truncated download"


@dataclass
class Chaos:
    """``Emulator.chaos``: a fault for a request with probability ``rate``, seeded."""

    rng: random.Random
    rate: float
    timeout: float

    def __call__(self, route: str) -> Fault | None:
        kinds = ROUTE_FAULTS.get(route)
        if not kinds or self.rng.random() >= self.rate:
            return None
        match self.rng.choice(kinds):
            case "429 + Retry-After":
                return Fault.status(429, retry_after=1)
            case "429":
                return Fault.status(429)
            case "5xx":
                return Fault.status(self.rng.choice((500, 502, 503, 504)))
            case "timeout":
                return Fault.delay(self.timeout * 2)
            case "connection reset":
                return Fault.drop()
            case "malformed JSON":
                return Fault.malformed()
            case "slow body":
                # Half inside the client's read timeout (just slow), half past it (answer lost).
                return Fault.slow(self.timeout * self.rng.choice((0.3, 2.0)))
            case _:
                return Fault.truncate()


@dataclass
class Call:
    """One generate call and what became of its job."""

    index: int
    model: str
    prompt: str
    job_id: str | None = None
    status: str | None = None
    error: str | None = None
    warning: str | None = None
    text: str = ""


@dataclass
class FaultReport:
    """What a fault run did and every promise it saw broken (``problems``, ``crashes``)."""

    jobs: int = 0
    faults: Counter[str] = field(default_factory=Counter[str])
    outcomes: Counter[str] = field(default_factory=Counter[str])
    ledger: Ledger = field(default_factory=lambda: Ledger(0, 0))
    problems: list[str] = field(default_factory=list[str])
    crashes: list[str] = field(default_factory=list[str])
    hangs: list[str] = field(default_factory=list[str])
    refused_yet_created: list[str] = field(default_factory=list[str])
    ambiguous: list[str] = field(default_factory=list[str])
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        """Jobs the provider made that the user cannot get: unknown to the journal, refused to the
        caller, or handed to another request (a wrong adoption robs the job it belonged to)."""
        ledger = self.ledger
        return len(ledger.orphans) + len(self.refused_yet_created) + len(ledger.wrong_adoptions)


async def run_fault_scenario(
    home: Path,
    *,
    jobs: int = 60,
    rate: float = 0.2,
    fail_rate: float = 0.1,
    seed: int = 7,
    concurrency: int = 12,
    read_timeout: float = 0.5,
) -> FaultReport:
    """Run ``jobs`` generate calls against the emulator with faults at ``rate`` (see the module)."""
    started = time.perf_counter()
    report = FaultReport(jobs=jobs)
    rng = random.Random(seed)
    emulator = new_emulator()
    emulator.chaos = Chaos(random.Random(rng.random()), rate, read_timeout)
    settings = bench_settings(home, http_timeout=read_timeout, default_wait_seconds=10.0)
    images = [png_data_uri(400, (40 * n, 200 - 30 * n, 90)) for n in range(4)]
    calls = [Call(i, MODELS[i % len(MODELS)], f"fault job {i}: a cat turns its head") for i in range(jobs)]
    failing = {i for i in range(jobs) if rng.random() < fail_rate}
    image_of = {i: images[i % len(images)] if rng.random() < 0.25 else CAT_URL for i in range(jobs)}

    async with Client(build_server(settings, transport=emulator.transport())) as client:
        limiter = anyio.CapacityLimiter(concurrency)

        async def generate(call: Call) -> None:
            async with limiter:
                if call.index in failing:
                    emulator.fail_next_job(f"injected failure for the job after {call.index}")
                arguments = {"image": image_of[call.index], "prompt": call.prompt}
                await _ask(client, report, call, f"{call.model}_generate_video", arguments)

        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(generate, call)
        # Ask again with the faults still on, then with the provider healthy: once to settle or
        # adopt lost submits, once more for the jobs that adoption made live again.
        await _follow_up(client, report, calls, limiter)
        emulator.chaos = None
        await _follow_up(client, report, calls, limiter)
        await _follow_up(client, report, calls, limiter)
        # The server still answers after all of it.
        for name, arguments in (("list_jobs", {}), (f"{MODELS[0]}_estimate_cost", {"duration": 8})):
            result = await client.call_tool(name, arguments)
            if result.is_error:
                report.crashes.append(f"{name} failed after the run: {text_of(result)}")

    _judge(report, calls, emulator, settings.database_path)
    report.seconds = time.perf_counter() - started
    return report


async def _ask(client: Client, report: FaultReport, call: Call, tool: str, arguments: dict[str, Any]) -> None:
    """Make one call, bounded, and note what it said about the job."""
    result = None
    with anyio.move_on_after(CALL_LIMIT):
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as exc:
            report.crashes.append(f"{tool} for job {call.index} raised {exc!r}")
            return
    if result is None:
        report.hangs.append(f"{tool} for job {call.index} did not answer in {CALL_LIMIT:.0f} s")
        return
    text = text_of(result)
    record = record_of(result)
    if result.is_error and is_crash(text):
        report.crashes.append(f"{tool} for job {call.index} crashed: {text!r}")
        return
    if record is None or "job_id" not in record:
        if not result.is_error:
            report.problems.append(f"{tool} for job {call.index} answered without a job: {text!r}")
        # Refused before a job existed (a 429 storm, a failed upload): the text says why.
        call.status, call.error, call.text = "refused", text, text
        return
    call.job_id = str(record["job_id"])
    call.status = str(record["status"])
    call.error = record.get("error")
    call.warning = record.get("warning")
    call.text = text


async def _follow_up(
    client: Client, report: FaultReport, calls: list[Call], limiter: anyio.CapacityLimiter
) -> None:
    async def one(call: Call) -> None:
        async with limiter:
            arguments = {"job_id": call.job_id, "wait_seconds": 10}
            await _ask(client, report, call, "get_result", arguments)

    async with anyio.create_task_group() as group:
        for call in calls:
            if call.job_id is not None and call.status not in ("completed", "failed"):
                group.start_soon(one, call)


def _judge(report: FaultReport, calls: list[Call], emulator: Emulator, database: Path) -> None:
    for _, fault in emulator.applied_faults:
        report.faults[label(fault)] += 1
    report.faults["failed job"] = sum(job.failure is not None for job in emulator.submissions())
    rows = journal(database)
    report.ledger = reconcile_ledger(emulator, rows)
    provider_prompts = Counter(str(prompt_of(job.body)) for job in emulator.submissions())
    for call in calls:
        outcome = call.status or "no answer"
        if outcome == "completed" and call.warning:
            outcome = "completed (video not saved)"
        report.outcomes[outcome] += 1
        if call.status == "refused":
            if provider_prompts[call.prompt]:
                report.refused_yet_created.append(
                    f"job {call.index} was refused with {call.error!r}, yet the provider has it"
                )
            continue
        if call.status in ("failed", "unconfirmed") and not (call.error or "").strip():
            report.problems.append(f"job {call.index} ({call.job_id}) is {call.status} with no reason")
        if call.status == "unconfirmed" and call.model not in VTRIX_MODELS:
            # WaveSpeed's history lists no request bodies: two lost answers of one model in the
            # same window cannot be told apart, and the runner says so rather than guess.
            if AMBIGUOUS in (call.warning or ""):
                report.ambiguous.append(f"{call.job_id}: {call.warning}")
            else:
                report.problems.append(
                    f"WaveSpeed job {call.index} ({call.job_id}) is unresolved: {call.error} {call.warning}"
                )
        elif call.status not in ("completed", "failed", "unconfirmed"):
            report.problems.append(f"job {call.index} ({call.job_id}) ended {call.status}: {call.text!r}")
    for row in rows:
        if row.status not in ("completed", "failed", "unconfirmed"):
            report.problems.append(f"journal row {row.id} was left {row.status}")
