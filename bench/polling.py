"""Knowing a job is done: a fixed 1 s poller beside the adaptive schedule, on the same jobs, in one run.

Every job runs a log-normal time at the emulator (median = the model's ``typical_seconds``, sigma
0.3; real seconds, not scaled), drawn from a seeded stream keyed by its prompt, so job ``n`` lasts
exactly as long in every arm. Each arm is a process of its own (its own event loop, as each user's
server would be): a server reached by an in-memory MCP client, with the emulator mounted in-process.
All arms start together and their jobs are all submitted at once:

- ``fixed 1 s``: a status poll at once and then every second, what WaveSpeed's SDK and MCP server do;
- ``adaptive``: the server's schedule (``DEFAULT_POLL``), plus other ``peak_interval`` values to show
  the trade-off; it takes the submit's answer as the first status (no poll at once) and reads
  Vtrix's ``progress`` (WaveSpeed sends none). The catalog's ``typical_seconds`` it starts from is
  the median the jobs are drawn with; ``--drift`` shows what happens when it is not.

With ``--drift``, a third section runs WaveSpeed jobs 1.5 times slower than the catalog says, with
and without a journal of 30 earlier jobs that the schedule learns the real durations from.

The per-provider rate limit is off in every arm (that is item 3, bench/scale.py): 150 jobs at once
under a fixed 1 s poller are 150 requests a second.

Per job: ``late`` = the waiting client's result (the generate call returning, after the server has
archived the video) minus the job's end at the emulator (its start plus its drawn time); ``seen`` =
the first status poll at or after that end, minus the end (``late`` - ``seen`` is the download and
archive, the same work whoever polls); ``polls`` = status polls the emulator answered for the job.

    .venv/bin/python bench/polling.py [--jobs 150] [--spread 20] [--seed 8] [--drift]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
from server.jobs.store import Job, JobStore
from server.sandbox import EmuJob, Emulator
from server.sandbox.emulator import LogNormalDurations
from server.settings import DEFAULT_POLL, PollPolicy, Settings

KEY = "bench-key-0123456789"
CAT_URL = "https://example.com/cat.png"
SPECS = {spec.slug: spec for spec in load_catalog().select(None)}
WAVESPEED = SPECS["wan22_i2v_480p_lora_ultra_fast"]  # typical 40 s
VTRIX = SPECS["wan22_i2v_flash"]  # typical 60 s
FIXED = PollPolicy(interval=1.0, max_interval=1.0)
POLL_ROUTES = {"ws.result", "vx.task"}
DRIFT = 1.5
HISTORY = 30


def adaptive(peak: float | None = None) -> PollPolicy:
    changes: dict[str, object] = {"provider_rate": None}
    if peak is not None:
        changes["peak_interval"] = peak
    return DEFAULT_POLL.model_copy(update=changes)


@dataclass(frozen=True)
class Arm:
    """One server polling one model's jobs with one policy."""

    section: str
    name: str
    spec: ModelSpec
    policy: PollPolicy
    factor: float = 1.0  # the jobs' real median over the catalog's
    history: int = 0  # completed jobs in the journal before the run
    baseline: bool = False


def arms(drift: bool) -> list[Arm]:
    ws = f"WaveSpeed ({WAVESPEED.slug}, {WAVESPEED.typical_seconds:.0f} s), no progress field"
    vx = f"Vtrix ({VTRIX.slug}, {VTRIX.typical_seconds:.0f} s), progress field"
    found = [
        Arm(ws, "fixed 1 s", WAVESPEED, FIXED, baseline=True),
        Arm(ws, "adaptive (default)", WAVESPEED, adaptive()),
        Arm(ws, "adaptive, peak_interval 0.6", WAVESPEED, adaptive(0.6)),
        Arm(ws, "adaptive, peak_interval 1.0", WAVESPEED, adaptive(1.0)),
        Arm(vx, "fixed 1 s", VTRIX, FIXED, baseline=True),
        Arm(vx, "adaptive (default)", VTRIX, adaptive()),
    ]
    if drift:
        section = f"WaveSpeed jobs {DRIFT}x slower than the catalog's {WAVESPEED.typical_seconds:.0f} s"
        found += [
            Arm(section, "fixed 1 s", WAVESPEED, FIXED, factor=DRIFT, baseline=True),
            Arm(section, "adaptive, no history", WAVESPEED, adaptive(), factor=DRIFT),
            Arm(section, f"adaptive, {HISTORY} past jobs", WAVESPEED, adaptive(), DRIFT, HISTORY),
        ]
    return found


# --- one arm, in a process of its own ------------------------------------------------------------


def prompt_key(job: EmuJob) -> str:
    return prompt_of(job.body) or job.id


def settings_for(home: Path, policy: PollPolicy) -> Settings:
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


def seed_history(home: Path, spec: ModelSpec, durations: list[float]) -> None:
    """Journal ``durations`` as this model's earlier completed jobs (WaveSpeed's inference times)."""
    store = JobStore(home / "jobs.sqlite3")
    now = time.time()
    try:
        for n, seconds in enumerate(durations):
            start = now - 7200 + n * 120
            store.insert(
                Job(
                    id=f"{spec.slug}-history{n:04d}",
                    model=spec.slug,
                    provider=spec.provider,
                    status="completed",
                    submit_state="accepted",
                    params={},
                    request_hash=f"history-{n}",
                    created_at=start,
                    updated_at=start + seconds,
                    provider_job_id=f"history-{n}",
                    submitted_at=start,
                    finished_at=start + seconds + 1,
                    inference_ms=int(seconds * 1000),
                )
            )
    finally:
        store.close()


async def probe_loop(lags: list[float], stop: anyio.Event) -> None:
    """How late a 50 ms sleep wakes: this process's event loop delay."""
    while not stop.is_set():
        start = time.monotonic()
        await anyio.sleep(0.05)
        lags.append(time.monotonic() - start - 0.05)


async def run_arm(arm: Arm, jobs: int, seed: int, home: Path, spread: float) -> dict[str, Any]:
    emulator = Emulator(wavespeed_key=KEY, vtrix_key=KEY)
    median = arm.spec.typical_seconds * arm.factor
    emulator.duration_sampler = LogNormalDurations(
        {arm.spec.model_id: median}, 0.3, seed=seed, key=prompt_key
    )
    emulator.render_scale = 0.05  # tiny videos: their making and checking is not what is measured
    emulator.fps = 1
    if arm.history:
        rng = random.Random(seed + 1)
        seed_history(home, arm.spec, [rng.lognormvariate(math.log(median), 0.3) for _ in range(arm.history)])
    server = build_server(settings_for(home, arm.policy), transport=emulator.transport())
    tool = f"{arm.spec.slug}_generate_video"
    results: dict[str, float] = {}
    failures: list[str] = []
    lags: list[float] = []
    stop = anyio.Event()
    async with Client(server) as client, anyio.create_task_group() as outer:
        outer.start_soon(probe_loop, lags, stop)

        async def one(n: int) -> None:
            await anyio.sleep(spread * n / jobs)  # arrivals spread out, the same in every arm
            prompt = f"job {n}: the harbour at dusk, slow pan"
            arguments = {"image": CAT_URL, "prompt": prompt, "wait_seconds": 500}
            result = await client.call_tool(tool, arguments)
            results[prompt] = time.monotonic()
            record = result.structured_content or {}
            if record.get("status") != "completed":
                failures.append(f"{prompt}: {record.get('status')} {record.get('error')}")

        async with anyio.create_task_group() as group:
            for n in range(jobs):
                group.start_soon(one, n)
        stop.set()
    polls_by_job: dict[str, list[float]] = {}
    for call in emulator.calls:
        if call.route in POLL_ROUTES:
            job_id = call.path.split("/")[-2 if call.path.endswith("/result") else -1]
            polls_by_job.setdefault(job_id, []).append(call.at)
    late: list[float] = []
    seen: list[float] = []
    polls: list[int] = []
    for job in emulator.jobs.values():
        assert job.duration is not None
        end = job.started + job.duration
        prompt = prompt_key(job)
        if prompt in results:
            late.append(results[prompt] - end)
            seen.append(min((t for t in polls_by_job.get(job.id, []) if t >= end), default=math.inf) - end)
            polls.append(job.polls)
    cpu = time.process_time()
    return {"late": late, "seen": seen, "polls": polls, "failures": failures, "lags": lags, "cpu": cpu}


# --- the run: every arm at once, then the table ------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(found: list[Arm], figures: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> None:
    print(
        f"{date.today().isoformat()}, 2 cores; {len(found)} arms x {args.jobs} jobs, each arm its own "
        f"process, all arms at once, jobs submitted over {args.spread:.0f} s; real seconds"
    )
    print(
        f"job times: log-normal, sigma 0.3, seed {args.seed}, the same per job in every arm; "
        f"whole run {wall:.0f} s"
    )
    worst = max(max(f["lags"]) for f in figures)
    p99 = max(pct(f["lags"], 0.99) for f in figures)
    cpu = sum(f["cpu"] for f in figures)
    print(
        f"CPU of all arms: {cpu:.0f} s; event loop delay (50 ms probe): worst p99 {p99 * 1000:.0f} ms, ",
        end="",
    )
    print(f"max {worst:.1f} s")
    overhead = statistics.median(x - y for f in figures for x, y in zip(f["late"], f["seen"], strict=True))
    print(f"late - seen (download and archive, the same whoever polls): median {overhead:.3f} s")
    header = f"  {'':30} {'late median':>11} {'p90':>6} {'seen median':>11} {'polls/job':>9}   vs fixed 1 s"
    current = ""
    base: dict[str, Any] = {}
    verdicts: list[str] = []
    for arm, got in zip(found, figures, strict=True):
        if arm.section != current:
            current = arm.section
            print(f"\n{current}")
            print(header)
        if got["failures"]:
            print(f"  {arm.name}: {len(got['failures'])} calls did not complete, e.g. {got['failures'][0]}")
        if arm.baseline:
            base = got
        late, polls = statistics.median(got["late"]), statistics.fmean(got["polls"])
        late_ratio = late / statistics.median(base["late"])
        poll_ratio = polls / statistics.fmean(base["polls"])
        versus = "(baseline)" if arm.baseline else f"late x{late_ratio:.2f}, polls x{poll_ratio:.2f}"
        print(
            f"  {arm.name:30} {late:9.3f} s {pct(got['late'], 0.9):5.2f}s "
            f"{statistics.median(got['seen']):9.3f} s {polls:9.1f}   {versus}"
        )
        if not arm.baseline:
            both = " -> both met" if late_ratio <= 1 and poll_ratio <= 0.5 else ""
            verdicts.append(
                f"  {arm.section}\n    {arm.name}: late median x{late_ratio:.2f} (<= 1.00) "
                f"{verdict(late_ratio <= 1)}; polls x{poll_ratio:.2f} (<= 0.50) "
                f"{verdict(poll_ratio <= 0.5)}{both}"
            )
    print("\nTarget: median late no worse than the fixed 1 s poller's, with at most half its polls per job")
    print("\n".join(verdicts))


def run_child(index: int, jobs: int, seed: int, drift: bool, spread: float) -> None:
    logging.disable(logging.INFO)  # a log line per request would cost more than the polls measured
    arm = arms(drift)[index]
    with tempfile.TemporaryDirectory() as tmp:
        figures = anyio.run(run_arm, arm, jobs, seed, Path(tmp), spread)
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=150, help="jobs per arm")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--drift", action="store_true", help="add the slower-than-the-catalog section")
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which jobs are submitted")
    parser.add_argument("--arm", type=int, help=argparse.SUPPRESS)  # run one arm, print its figures
    args = parser.parse_args()
    drift = args.drift
    if args.arm is not None:
        run_child(args.arm, args.jobs, args.seed, drift, args.spread)
        return
    found = arms(drift)
    started = time.monotonic()
    command = [sys.executable, __file__, "--jobs", str(args.jobs), "--seed", str(args.seed)]
    command += ["--spread", str(args.spread)]
    if drift:
        command.append("--drift")
    children = [
        subprocess.Popen([*command, "--arm", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(len(found))
    ]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit("an arm failed; see its error above")
    figures = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    report(found, figures, args, time.monotonic() - started)


if __name__ == "__main__":
    main()
