"""Knowing a job is done: the adaptive schedule against a fixed 1 s poller, whatever the catalog says.

Two parts, one run:

1. **The sweep** (virtual clock). The server's own ``PollPlanner`` (the object the runner asks for
   every delay, learning as the runner feeds it) drives the polls of simulated jobs, seconds
   counted instead of slept: the first status is the submit's answer, each poll takes 10 ms, a job
   is seen done by the first poll at or after its end, and WaveSpeed's ``timings.inference`` comes
   with the completed status. The fixed 1 s poller (a poll at once, then one a second after each
   answer) runs on the same drawn durations. Conditions: the catalog's typical time 0.25-4x off
   the jobs' true median (``ratio`` = true / catalog), log-normal sigma 0.2 / 0.3 / 0.6, medians
   8 s and 60 s; **cold** (fresh journal, bursts of 12 jobs at once), **warm** (5 finished jobs in
   the journal, then bursts of 10), **learned** (the same after 60, to show what five jobs cannot
   teach), and a **speed shift** (30 finished jobs, then the provider 2x slower or faster; a stream
   of jobs, counted from when 5 at the new speed have finished). 300 replicas a cell by default:
   with 300 jobs a cell, the 1 s poller's own median wait moved 0.43-0.59 s between cells by the
   draw alone, and at 100 replicas a cell's median difference still moved by 0.02-0.03 s (sd over
   seeds), as much as the margins measured. Cells run one process per core.
2. **Real rows** (real seconds): a few cells run as the sweep runs them, through the real server
   (an in-memory MCP client, the emulator mounted in-process over httpx): per arm, 5 (cold) or 24
   (warm) replicas, each a server with a journal of its own (fresh, or 5 finished jobs drawn for
   it) and one burst of 12 (cold) or 10 (warm) jobs; the warm 8 s arm 6 replicas at a time, as 24
   servers' 8 s jobs ending together load the process (archiving took 4 s a job, polls went late).
   Each arm a process of its own, all arms at once, fixed 1 s arms on the same drawn durations.
   Beside each arm, the virtual clock on the very same jobs (their starts, drawn times and
   journal): the real rows show the virtual clock gives the figures real seconds do, job for job,
   including one unscaled 60 s row. A real arm's own verdict is one draw of its replicas' five-job
   estimates; ``--real-odds`` shows how often an arm of its size misses by that draw alone.

Per job: ``wait`` = the first status poll at or after the job's end, minus that end (in the real
rows, ``late`` also holds the download and archive, the same work whoever polls); ``polls`` =
status polls sent for it.

    .venv/bin/python bench/polling.py [--seed 8] [--replicas 300] [--no-real | --real-only | --real-odds]
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from pydantic import SecretStr

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import prompt_of
from server.app import build_server
from server.catalog import ModelSpec, load_catalog
from server.jobs.schedule import TIME_PARAMS, PollPlanner
from server.jobs.store import Job, SqliteStore
from server.sandbox import EmuJob, Emulator
from server.sandbox.emulator import LogNormalDurations
from server.sandbox.faults import Fault
from server.settings import DEFAULT_POLL, PollPolicy, Settings

KEY = "bench-key-0123456789"
CAT_URL = "https://example.com/cat.png"
SPECS = {spec.slug: spec for spec in load_catalog().select(None)}
SPEC = SPECS["wan22_i2v_480p_ultra_fast"]  # WaveSpeed, typical 30 s, no progress field
FIXED = PollPolicy(interval=1.0, max_interval=1.0)
OURS = DEFAULT_POLL.model_copy(update={"provider_rate": None})
POLL_ROUTES = {"ws.result", "vx.task"}
FIGURES = ("late", "waits", "polls", "virtual_waits", "virtual_polls")  # per job, in a real arm
REQUEST_SECONDS = 0.01
HISTORY_WARM = 5
HISTORY_LEARNED = 60
HISTORY_SHIFT = 30


# --- conditions and targets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One cell of the sweep: how long jobs take, what the catalog says, what the journal knows."""

    state: str  # cold | warm | learned (warm, after HISTORY_LEARNED jobs) | slower | faster
    median: float  # the jobs' true median, seconds (after a shift: the new one)
    sigma: float
    ratio: float  # true median / the catalog's typical time

    @property
    def name(self) -> str:
        return (
            f"{self.state:6} median {self.median:3.0f} s, sigma {self.sigma}, catalog x{1 / self.ratio:.2f}"
        )

    def spec(self) -> ModelSpec:
        return SPEC.model_copy(update={"typical_seconds": self.median / self.ratio})


def conditions() -> list[Condition]:
    found: list[Condition] = []
    for state in ("cold", "warm"):
        for median in (8.0, 60.0):
            for sigma in (0.2, 0.3, 0.6):
                found += [Condition(state, median, sigma, ratio) for ratio in (0.25, 0.5, 1.0, 2.0, 4.0)]
    for median in (8.0, 60.0):
        found += [Condition("learned", median, sigma, 1.0) for sigma in (0.3, 0.6)]
    for state in ("slower", "faster"):
        for median in (8.0, 60.0):
            found.append(Condition(state, median, 0.3, 1.0))
    return found


@dataclass(frozen=True)
class Figures:
    """What one poller did on one condition's jobs."""

    waits: list[float]
    polls: list[int]

    @property
    def median(self) -> float:
        return statistics.median(self.waits)

    @property
    def p90(self) -> float:
        return pct(self.waits, 0.9)

    @property
    def per_job(self) -> float:
        return statistics.fmean(self.polls)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def targets(cond: Condition) -> tuple[float, float, float]:
    """(median allowance, p90 allowance, polls ratio) against the fixed 1 s poller."""
    if cond.state == "cold":
        return 0.5, 1.0, 1.0
    return 0.0, 0.5, 0.8 if cond.sigma > 0.5 else 0.5


def verdict(cond: Condition, ours: Figures, fixed: Figures) -> bool:
    median, p90, polls = targets(cond)
    return (
        ours.median <= fixed.median + median
        and ours.p90 <= fixed.p90 + p90
        and ours.per_job <= polls * fixed.per_job
    )


# --- the virtual clock ------------------------------------------------------------------------------


def _row(n: int, spec: ModelSpec, submitted: float, **changes: Any) -> Job:
    job = Job(
        id=f"job-{n}",
        model=spec.slug,
        provider=spec.provider,
        status="running",
        submit_state="accepted",
        params={},
        request_hash=f"h{n}",
        created_at=submitted,
        updated_at=submitted,
        provider_job_id=f"p{n}",
        submitted_at=submitted,
    )
    return replace(job, **changes)


def history_rows(spec: ModelSpec, durations: Sequence[float]) -> list[Job]:
    """Completed journal rows of ``spec`` that took ``durations`` (WaveSpeed's inference times)."""
    return [
        _row(
            -1 - n,
            spec,
            -1e6 + 200 * n,
            status="completed",
            finished_at=-1e6 + 200 * n + seconds + 0.5,
            inference_ms=round(seconds * 1000),
        )
        for n, seconds in enumerate(durations)
    ]


def run_virtual(
    spec: ModelSpec,
    jobs: Sequence[tuple[float, float]],
    history: Sequence[Job] = (),
    *,
    policy: PollPolicy = OURS,
    fixed: float | None = None,
) -> tuple[list[float], list[int], list[float]]:
    """Poll ``jobs`` ((submitted, seconds)) on a virtual clock; waits, polls and ends per job.

    ``fixed``: a poll at once and then every ``fixed`` seconds; otherwise the planner decides,
    fed as the runner feeds it.
    """
    planner = PollPlanner(policy, history=lambda slug: list(history))
    # (time, job, is a submit): a submit's answer is the job's first status; its first poll is
    # planned then, with what the planner knows by then.
    queue: list[tuple[float, int, bool]] = [(submitted, n, True) for n, (submitted, _) in enumerate(jobs)]
    heapq.heapify(queue)
    polls = [0] * len(jobs)
    waits = [0.0] * len(jobs)
    while queue:
        at, n, submit = heapq.heappop(queue)
        submitted, seconds = jobs[n]
        job = _row(n, spec, submitted)
        if submit:
            first = 0.0 if fixed is not None else planner.next_delay(job, spec, at)
            heapq.heappush(queue, (at + first, n, False))
            continue
        polls[n] += 1
        answered = at + REQUEST_SECONDS
        if at >= submitted + seconds:
            waits[n] = at - (submitted + seconds)
            if fixed is None:
                done = replace(job, video_url="https://v", inference_ms=max(1, round(seconds * 1000)))
                planner.observe(done, spec, answered)
                planner.forget(job.id)
            continue
        if fixed is not None:
            heapq.heappush(queue, (answered + fixed, n, False))
        else:
            planner.observe(job, spec, answered)
            heapq.heappush(queue, (answered + planner.next_delay(job, spec, answered), n, False))
    ends = [submitted + seconds for submitted, seconds in jobs]
    return waits, polls, ends


def simulate(cond: Condition, seed: int, replicas: int) -> tuple[Figures, Figures]:
    """The planner and the fixed 1 s poller on the same drawn jobs of ``cond``."""
    spec = cond.spec()
    mu = math.log(cond.median)
    ours: tuple[list[float], list[int]] = ([], [])
    base: tuple[list[float], list[int]] = ([], [])
    for replica in range(replicas):
        rng = random.Random(f"{seed}:{cond}:{replica}")
        if cond.state in ("cold", "warm", "learned"):
            size = 12 if cond.state == "cold" else 10
            known = {"cold": 0, "warm": HISTORY_WARM, "learned": HISTORY_LEARNED}[cond.state]
            history = history_rows(spec, [rng.lognormvariate(mu, cond.sigma) for _ in range(known)])
            jobs = [(rng.uniform(0, 1), rng.lognormvariate(mu, cond.sigma)) for _ in range(size)]
            counted = list(range(size))
        else:
            before = mu + math.log(0.5 if cond.state == "slower" else 2.0)
            history = history_rows(
                spec, [rng.lognormvariate(before, cond.sigma) for _ in range(HISTORY_SHIFT)]
            )
            step = cond.median / 3  # about three jobs at a time
            jobs = [(i * step, rng.lognormvariate(mu, cond.sigma)) for i in range(20)]
            counted = []
        for found, arm in (
            (run_virtual(spec, jobs, history), ours),
            (run_virtual(spec, jobs, history, fixed=1.0), base),
        ):
            waits, polls, ends = found
            if not counted and cond.state in ("slower", "faster"):
                fifth = sorted(ends)[4]  # from when five jobs at the new speed have finished
                counted = [i for i, (submitted, _) in enumerate(jobs) if submitted >= fifth]
            arm[0].extend(waits[i] for i in counted)
            arm[1].extend(polls[i] for i in counted)
    return Figures(*ours), Figures(*base)


# --- real rows: the server, real seconds -------------------------------------------------------------


@dataclass(frozen=True)
class RealArm:
    """One poller on one cell, as the sweep runs it: ``replicas`` servers at once, each with a
    journal of its own (fresh, or five finished jobs drawn for it) and one burst of jobs (12 cold,
    10 warm). The catalog's model is used as it is: its typical time sets the cell's ratio."""

    cond: Condition
    slug: str
    fixed: bool
    replicas: int
    at_once: int  # replicas run in waves of this many: 8 s jobs ending together load the process
    submit_seconds: float = 0.0  # how long each submit's answer takes to come back

    @property
    def burst(self) -> int:
        return 12 if self.cond.state == "cold" else 10


def real_arms(submit_seconds: float = 0.0) -> list[RealArm]:
    ultra, full = SPECS["wan22_i2v_480p_ultra_fast"], SPECS["wan22_i2v"]
    cells = [
        (Condition("cold", 8.0, 0.3, 8.0 / ultra.typical_seconds), ultra.slug, 5, 5),
        (Condition("warm", 8.0, 0.3, 8.0 / ultra.typical_seconds), ultra.slug, 24, 6),
        (Condition("warm", 60.0, 0.3, 60.0 / full.typical_seconds), full.slug, 24, 24),
    ]
    return [
        RealArm(cond, slug, fixed, replicas, at_once, submit_seconds)
        for cond, slug, replicas, at_once in cells
        for fixed in (True, False)
    ]


def _prompt_key(job: EmuJob) -> str:
    return prompt_of(job.body) or job.id


def _settings(home: Path, policy: PollPolicy) -> Settings:
    return Settings.model_validate(
        {
            "wavespeed_api_key": SecretStr(KEY),
            "vtrix_api_key": SecretStr(KEY),
            "wavespeed_base_url": "http://testserver",
            "vtrix_base_url": "http://testserver",
            "home": home,
            "allowed_dirs": (home,),
            "poll": policy,
        }
    )


def time_params(spec: ModelSpec) -> dict[str, Any]:
    """The time-changing arguments a call with only an image and a prompt is journaled with."""
    return {
        param.name: param.default
        for param in spec.param
        if param.name in TIME_PARAMS and param.default is not None
    }


def seed_journal(home: Path, rows: Sequence[Job]) -> None:
    store = SqliteStore(home / "jobs.sqlite3")
    now = time.time()
    try:
        for row in rows:
            shift = now - 1e6 - 7200
            assert row.submitted_at is not None
            assert row.finished_at is not None
            store.insert_now(
                replace(
                    row,
                    created_at=row.created_at + shift,
                    updated_at=row.finished_at + shift,
                    submitted_at=row.submitted_at + shift,
                    finished_at=row.finished_at + shift,
                )
            )
    finally:
        store.close_now()


async def run_replica(arm: RealArm, seed: int, replica: int, home: Path) -> dict[str, list[Any]]:
    """One server, its own emulator and journal, one burst of jobs; per job: late, wait and polls."""
    cond = arm.cond
    spec = SPECS[arm.slug]
    emulator = Emulator(wavespeed_key=KEY, vtrix_key=KEY)
    emulator.duration_sampler = LogNormalDurations(
        {spec.model_id: cond.median}, cond.sigma, seed=seed, key=_prompt_key
    )
    emulator.render_scale = 0.05  # tiny videos: their making and checking is not what is measured
    emulator.fps = 1
    if arm.submit_seconds > 0:
        # Each job is made at once; the submit's answer trickles back over this long.
        slow = Fault.slow(arm.submit_seconds, chunks=2)
        emulator.chaos = lambda route: slow if route in ("ws.submit", "vx.submit") else None
    history: list[Job] = []
    if cond.state == "warm":
        rng = random.Random(f"{seed}:history:{replica}")
        drawn = [rng.lognormvariate(math.log(cond.median), cond.sigma) for _ in range(HISTORY_WARM)]
        history = history_rows(spec, drawn)
        # The journal rows the same call would have left: the kind the burst's jobs are of, not only
        # the model's pooled record.
        kind = time_params(spec)
        seed_journal(home, [replace(row, params=kind) for row in history])
    server = build_server(_settings(home, FIXED if arm.fixed else OURS), transport=emulator.transport())
    tool = f"{spec.slug}_generate_video"
    results: dict[str, float] = {}
    failures: list[str] = []
    async with Client(server) as client:

        async def one(n: int) -> None:
            await anyio.sleep(n / arm.burst)  # all within a second, the same in every arm
            prompt = f"replica {replica}, job {n}: the harbour at dusk, slow pan"
            result = await client.call_tool(tool, {"image": CAT_URL, "prompt": prompt, "wait_seconds": 590})
            results[prompt] = time.monotonic()
            record = result.structured_content or {}
            if record.get("status") != "completed":
                failures.append(f"{prompt}: {record.get('status')} {record.get('error')}")

        async with anyio.create_task_group() as group:
            for n in range(arm.burst):
                group.start_soon(one, n)
    polls_by_job: dict[str, list[float]] = {}
    for call in emulator.calls:
        if call.route in POLL_ROUTES:
            job_id = call.path.split("/")[-2 if call.path.endswith("/result") else -1]
            polls_by_job.setdefault(job_id, []).append(call.at)
    found: dict[str, list[Any]] = {key: [] for key in (*FIGURES, "failures")}
    found["failures"] = failures
    jobs = sorted(emulator.jobs.values(), key=lambda job: job.started)
    # The virtual clock on these very jobs (their starts and drawn times, the same journal): what
    # the sweep would have measured for them, so the two clocks are compared job for job.
    timeline = [(job.started - jobs[0].started, job.duration or 0.0) for job in jobs]
    virtual = run_virtual(spec, timeline, history, fixed=1.0 if arm.fixed else None)
    for n, job in enumerate(jobs):
        assert job.duration is not None
        end = job.started + job.duration
        prompt = _prompt_key(job)
        if prompt in results:
            found["late"].append(results[prompt] - end)
            seen = min((t for t in polls_by_job.get(job.id, []) if t >= end), default=math.inf)
            found["waits"].append(seen - end)
            found["polls"].append(job.polls)
            found["virtual_waits"].append(virtual[0][n])
            found["virtual_polls"].append(virtual[1][n])
    return found


async def run_real(arm: RealArm, seed: int, home: Path) -> dict[str, Any]:
    """Every replica of ``arm``, ``arm.at_once`` at a time, in this process; their figures pooled."""
    pooled: dict[str, Any] = {key: [] for key in (*FIGURES, "failures")}

    async def replica(index: int) -> None:
        folder = home / f"replica-{index}"
        folder.mkdir()
        for name, values in (await run_replica(arm, seed, index, folder)).items():
            pooled[name].extend(values)

    for wave in range(0, arm.replicas, arm.at_once):
        async with anyio.create_task_group() as group:
            for index in range(wave, min(wave + arm.at_once, arm.replicas)):
                group.start_soon(replica, index)
    pooled["cpu"] = time.process_time()
    return pooled


def run_child(index: int, seed: int, submit_seconds: float) -> None:
    logging.disable(logging.INFO)  # a log line per request would cost more than the polls measured
    arm = real_arms(submit_seconds)[index]
    with tempfile.TemporaryDirectory() as tmp:
        figures = anyio.run(run_real, arm, seed, Path(tmp))
    print(json.dumps(figures))  # stdout-ok: the parent reads it


# --- the report ---------------------------------------------------------------------------------------


def report_sweep(seed: int, replicas: int, cells: Sequence[Condition]) -> int:
    print(
        f"Sweep on a virtual clock: the server's PollPlanner, {REQUEST_SECONDS * 1000:.0f} ms a poll, "
        f"seed {seed}, {replicas} replicas per condition (cold: bursts of 12 on a fresh journal; warm: "
        f"{HISTORY_WARM} finished jobs, then bursts of 10; learned: the same after {HISTORY_LEARNED}, "
        f"to show what five jobs cannot teach; shift: {HISTORY_SHIFT} finished jobs at half or "
        "twice the time, then 20 jobs a third of a median apart, counted from the 5th finished at the "
        "new speed)"
    )
    print(
        "targets vs fixed 1 s: cold median +0.5 s, p90 +1 s, polls x1; warm median +0, p90 +0.5 s, polls x0.5"
    )
    print("(x0.8 at sigma 0.6); learned and shift: the warm targets")
    header = (
        f"| {'condition':44} | {'jobs':>5} | {'ours: median':>12} | {'p90':>6} | {'polls':>6} | "
        f"{'1 s: median':>11} | {'p90':>6} | {'polls':>6} | {'polls x':>7} | met |"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    missed = 0
    # Cells are independent and seeded: one process per core, printed in order.
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        found = list(pool.map(simulate, cells, [seed] * len(cells), [replicas] * len(cells)))
    for cond, (ours, fixed) in zip(cells, found, strict=True):
        ok = verdict(cond, ours, fixed)
        missed += not ok
        print(
            f"| {cond.name:44} | {len(ours.waits):5} | {ours.median:10.2f} s | {ours.p90:4.2f} s | "
            f"{ours.per_job:6.1f} | {fixed.median:9.2f} s | {fixed.p90:4.2f} s | {fixed.per_job:6.1f} | "
            f"{ours.per_job / fixed.per_job:7.2f} | {'met' if ok else 'NOT MET'} |"
        )
    return missed


def report_real(seed: int, submit_seconds: float = 0.0) -> int:
    arms = real_arms(submit_seconds)
    command = [sys.executable, __file__, "--seed", str(seed), "--submit-seconds", str(submit_seconds)]
    started = time.monotonic()
    children = [
        subprocess.Popen([*command, "--arm", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(len(arms))
    ]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit("a real arm failed; see its error above")
    figures = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    print(
        f"\nReal rows: real seconds, the server through an in-memory MCP client, the emulator in-process; "
        f"{len(arms)} arms at once, each its own process; replicas (a server, its journal, one burst): "
        + ", ".join(
            f"{arm.cond.state} {arm.cond.median:.0f} s: {arm.replicas} x {arm.burst}, {arm.at_once} at once"
            for arm in arms[::2]
        )
        + (f"; each submit answered {submit_seconds:g} s after the job was made" if submit_seconds else "")
        + f"; {time.monotonic() - started:.0f} s; "
        f"CPU of all arms {sum(f['cpu'] for f in figures):.0f} s"
    )
    header = (
        f"| {'condition':44} | {'jobs':>4} | {'ours: wait median':>17} | {'p90':>6} | {'polls':>5} | "
        f"{'1 s: wait median':>16} | {'p90':>6} | {'polls':>5} | {'polls x':>7} | met | "
        f"{'late median, ours / 1 s':>23} | {'virtual clock, same jobs: ours / 1 s':>36} | met |"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    missed = 0
    agreement: list[str] = []
    for i in range(0, len(arms), 2):
        base, got = figures[i], figures[i + 1]
        cond = arms[i].cond
        shares = [
            sum(a == b for a, b in zip(found["polls"], found["virtual_polls"], strict=True))
            / len(found["polls"])
            for found in (got, base)
        ]
        agreement.append(f"{cond.state} {cond.median:.0f} s {shares[0]:.0%} / {shares[1]:.0%}")
        for name, found in (("1 s", base), ("ours", got)):
            if found["failures"]:
                print(
                    f"  {name}: {len(found['failures'])} calls did not complete, e.g. {found['failures'][0]}"
                )
        ours, fixed = Figures(got["waits"], got["polls"]), Figures(base["waits"], base["polls"])
        ok = verdict(cond, ours, fixed) and not got["failures"]
        missed += not ok
        v_ours = Figures(got["virtual_waits"], got["virtual_polls"])
        v_fixed = Figures(base["virtual_waits"], base["virtual_polls"])
        late = f"{statistics.median(got['late']):.2f} / {statistics.median(base['late']):.2f} s"
        same = (
            f"{v_ours.median:.2f}, {v_ours.p90:.2f}, {v_ours.per_job:4.1f} / "
            f"{v_fixed.median:.2f}, {v_fixed.p90:.2f}, {v_fixed.per_job:4.1f}"
        )
        print(
            f"| {cond.name:44} | {len(ours.waits):4} | {ours.median:15.2f} s | {ours.p90:4.2f} s | "
            f"{ours.per_job:5.1f} | {fixed.median:14.2f} s | {fixed.p90:4.2f} s | {fixed.per_job:5.1f} | "
            f"{ours.per_job / fixed.per_job:7.2f} | {'met' if ok else 'NOT MET'} | {late:>23} | "
            f"{same:>36} | {'met' if verdict(cond, v_ours, v_fixed) else 'NOT MET'} |"
        )
    print("jobs polled as many times on both clocks, ours / 1 s: " + ", ".join(agreement))
    return missed


def arm_odds(arm: RealArm, seed: int, groups: int = 50) -> tuple[list[float], list[float], list[float]]:
    """How often a real arm of ``arm``'s size misses its cell by the draw alone, on the virtual
    clock: ``groups`` arms of ``arm.replicas`` servers (a journal of 5 drawn jobs, one burst sent
    within a second, as the real rows send it). The share of arms missing on the median, p90, polls
    and any of them; and per arm, its median minus the 1 s poller's, and its polls ratio."""
    spec, cond = SPECS[arm.slug], arm.cond
    mu = math.log(cond.median)
    misses = [0, 0, 0, 0]
    differences: list[float] = []
    ratios: list[float] = []
    for group in range(groups):
        ours: tuple[list[float], list[int]] = ([], [])
        base: tuple[list[float], list[int]] = ([], [])
        for replica in range(arm.replicas):
            rng = random.Random(f"{seed}:odds:{cond}:{group}:{replica}")
            known = HISTORY_WARM if cond.state == "warm" else 0
            history = history_rows(spec, [rng.lognormvariate(mu, cond.sigma) for _ in range(known)])
            jobs = [(n / arm.burst, rng.lognormvariate(mu, cond.sigma)) for n in range(arm.burst)]
            for found, fixed in ((ours, None), (base, 1.0)):
                waits, polls, _ = run_virtual(spec, jobs, history, fixed=fixed)
                found[0].extend(waits)
                found[1].extend(polls)
        mine, theirs = Figures(*ours), Figures(*base)
        differences.append(mine.median - theirs.median)
        ratios.append(mine.per_job / theirs.per_job)
        median, p90, polls = targets(cond)
        missed = (
            mine.median > theirs.median + median,
            mine.p90 > theirs.p90 + p90,
            mine.per_job > polls * theirs.per_job,
        )
        for i, miss in enumerate((*missed, any(missed))):
            misses[i] += miss
    return [count / groups for count in misses], differences, ratios


def report_odds(seed: int) -> None:
    arms = real_arms()[::2]  # one per cell
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        found = list(pool.map(arm_odds, arms, [seed] * len(arms)))
    print("\nA real arm's odds of missing its cell by the draw alone (virtual clock, 50 arms of its size):")
    print("| condition | arm | misses: median | p90 | polls | any | median - 1 s poller's | polls x |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arm, (shares, differences, ratios) in zip(arms, found, strict=True):
        print(
            f"| {arm.cond.name} | {arm.replicas} x {arm.burst} jobs | "
            + " | ".join(f"{share:.0%}" for share in shares)
            + f" | {statistics.fmean(differences):+.3f} s, sd {statistics.stdev(differences):.3f} | "
            f"{statistics.fmean(ratios):.3f}, sd {statistics.stdev(ratios):.3f} |"
        )


def parse_cells(text: str) -> list[Condition]:
    """``state:median:sigma:ratio`` cells, comma-separated."""
    found: list[Condition] = []
    for cell in text.split(","):
        state, median, sigma, ratio = cell.split(":")
        if state not in ("cold", "warm", "learned", "slower", "faster"):
            raise argparse.ArgumentTypeError(f"unknown state {state!r}")
        found.append(Condition(state, float(median), float(sigma), float(ratio)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=300, help="replicas per sweep condition")
    parser.add_argument("--no-real", action="store_true", help="the virtual-clock sweep only")
    parser.add_argument("--real-only", action="store_true", help="the real rows only")
    parser.add_argument(
        "--cells",
        type=parse_cells,
        help="sweep these cells instead of the issue's grid: state:median:sigma:ratio,... "
        "(e.g. warm:180:0.6:1, medians the schedule was not tuned on)",
    )
    parser.add_argument(
        "--real-odds",
        action="store_true",
        help="only how often a real arm of its size misses its cell by the draw alone (virtual clock)",
    )
    parser.add_argument(
        "--submit-seconds",
        type=float,
        default=0.0,
        help="real rows: every submit's answer takes this long after the job is made (a slow API)",
    )
    parser.add_argument("--arm", type=int, help=argparse.SUPPRESS)  # run one real arm, print its figures
    args = parser.parse_args()
    if args.arm is not None:
        run_child(args.arm, args.seed, args.submit_seconds)
        return
    print(
        f"{date.today().isoformat()}, {os.cpu_count()} cores; bench/polling.py --seed {args.seed} "
        f"--replicas {args.replicas}" + (f" --cells ({len(args.cells)} given)" if args.cells else "")
    )
    started = time.monotonic()
    if args.real_odds:
        report_odds(args.seed)
        return
    if not args.real_only:
        missed = report_sweep(args.seed, args.replicas, args.cells or conditions())
        print(f"sweep: {time.monotonic() - started:.0f} s, {missed} condition(s) not met")
    if not args.no_real:
        missed_real = report_real(args.seed, args.submit_seconds)
        print(f"real rows: {missed_real} not met")


if __name__ == "__main__":
    main()
