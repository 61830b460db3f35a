"""Replicas: 600 jobs across three server processes on one PostgreSQL journal, one SIGKILLed mid-run.

Three arms on the same jobs (same prompts, so the emulator draws the same log-normal durations):

- ``single``: one server process, SQLite journal (today's deployment), polling;
- ``replicas``: three replicas on a PostgreSQL started here, polling; once every job is
  submitted, the replica holding the most live jobs' leases is SIGKILLed;
- ``webhooks``: three replicas with ``WAN_MCP_PUBLIC_URL`` set, so WaveSpeed (the emulator) calls
  back when a job ends; polling is only a slow safety net.

Jobs are submitted through real MCP clients over Streamable HTTP (``wait_seconds: 0``), spread
round-robin over the replicas. Reported per arm: jobs lost (a returned job id that did not
complete), duplicate submits (provider jobs beyond one per request), downloads per job, status
requests per job, completion → result (the provider's end to the journal's ``completed``, video
saved and its poster drawn; beside it, to the holder knowing the video URL, before the download),
and for the kill the takeover time (SIGKILL until another replica holds each orphaned lease).

    .venv/bin/python -m bench.replicas [--jobs 600] [--median 30] [--rate 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psycopg
from mcp import Client
from psycopg.rows import dict_row

from bench.common import CAT_URL, SqliteStore, new_emulator, prompt_of, record_of
from bench.fleet import Replica, fleet, replica_env
from bench.postgres import drop_database, fresh_database, temporary_postgres
from server.sandbox import serve_emulator
from server.sandbox.emulator import LogNormalDurations

SLUG = "wan22_i2v_480p_ultra_fast"
CONCURRENCY = 24


@dataclass
class Arm:
    name: str
    replicas: int
    database: str | None
    webhooks: bool = False
    kill: bool = False
    jobs: int = 0
    lost: int = 0
    duplicates: int = 0
    downloads: float = 0.0
    status_requests: float = 0.0
    latency: list[float] = field(default_factory=list[float])
    notice: list[float] = field(default_factory=list[float])
    takeover: list[float] = field(default_factory=list[float])
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list[str])


def read_rows(arm: Arm, home: Path) -> list[dict[str, Any]]:
    if arm.database is None:
        store = SqliteStore(home / "jobs.sqlite3")
        try:
            return [
                {
                    "id": j.id,
                    "status": j.status,
                    "updated_at": j.updated_at,
                    "finished_at": j.finished_at,
                    "provider_job_id": j.provider_job_id,
                    "lease_owner": j.lease_owner,
                }
                for j in store.select_now(limit=1_000_000)
            ]
        finally:
            store.close_now()
    with psycopg.connect(arm.database) as conn, conn.cursor(row_factory=dict_row) as cursor:
        return list(
            cursor.execute(
                "SELECT id, status, updated_at, finished_at, provider_job_id, lease_owner FROM jobs"
            )
        )


async def submit_all(replicas: list[Replica], jobs: int, rate: float, arm: Arm) -> list[str]:
    ids: list[str] = []
    limiter = anyio.Semaphore(CONCURRENCY)
    async with AsyncExitStack() as stack:
        # One client per replica (modern era: each call is one self-contained POST).
        clients = [await stack.enter_async_context(Client(r.url)) for r in replicas]

        async def one(n: int) -> None:
            async with limiter:
                result = await clients[n % len(clients)].call_tool(
                    f"{SLUG}_generate_video",
                    {"image": CAT_URL, "prompt": f"replica bench job {n}", "wait_seconds": 0},
                )
            record = record_of(result)
            if record is None or "job_id" not in record:
                arm.errors.append(str(result.content)[:200])
            else:
                ids.append(str(record["job_id"]))

        # Submitted at a steady rate, as a day's traffic would be, not in one burst.
        start = anyio.current_time()
        async with anyio.create_task_group() as group:
            for n in range(jobs):
                await anyio.sleep_until(start + n / rate)
                group.start_soon(one, n)
    return ids


async def run_arm(arm: Arm, jobs: int, median: float, rate: float, work: Path) -> Arm:
    emulator = new_emulator()
    emulator.duration_sampler = LogNormalDurations({}, sigma=0.4, seed=7, default=median, key=_prompt)
    home = work / arm.name
    started = time.monotonic()
    async with serve_emulator(emulator) as base_url:
        env = replica_env(home, base_url, arm.database, lease_seconds=10.0, poll_interval=0)
        del env["WAN_MCP_POLL_INTERVAL"]  # the default adaptive schedule, unpaced (WAN_MCP_PROVIDER_RATE=0)
        async with fleet(arm.replicas, env, work / "logs" / arm.name, webhooks=arm.webhooks) as replicas:
            ids = await submit_all(replicas, jobs, rate, arm)
            arm.jobs = len(ids)
            if arm.kill:
                await _kill_one(arm, replicas, home)
            deadline = time.monotonic() + 20 * median + 120
            while True:
                rows = read_rows(arm, home)
                if (
                    all(r["status"] in ("completed", "failed", "unconfirmed") for r in rows)
                    or time.monotonic() > deadline
                ):
                    break
                await anyio.sleep(0.5)
    arm.seconds = time.monotonic() - started
    by_id = {r["id"]: r for r in rows}
    arm.lost = sum(1 for i in ids if by_id.get(i, {}).get("status") != "completed")
    prompts = [prompt_of(j.body) for j in emulator.submissions()]
    arm.duplicates = len(prompts) - len(set(prompts))
    files = sum(1 for c in emulator.calls if c.route == "file" and c.path.startswith("/sandbox/files/"))
    reads = sum(1 for c in emulator.calls if c.route == "ws.result")
    arm.downloads = files / max(arm.jobs, 1)
    arm.status_requests = reads / max(arm.jobs, 1)
    # The emulator's end of each job (its own monotonic clock) in wall time, beside the journal's.
    offset = time.time() - time.monotonic()
    ended = {j.id: j.finished + offset for j in emulator.submissions() if j.finished is not None}
    for r in rows:
        if r["status"] == "completed" and r["provider_job_id"] in ended:
            arm.latency.append(max(r["updated_at"] - ended[r["provider_job_id"]], 0.0))
            # _finish stamps finished_at as it starts the download: the video URL was known then.
            arm.notice.append(max(r["finished_at"] - ended[r["provider_job_id"]], 0.0))
    return arm


async def _kill_one(arm: Arm, replicas: list[Replica], home: Path) -> None:
    rows = read_rows(arm, home)
    live = [r for r in rows if r["status"] in ("queued", "running")]
    victim = max(replicas, key=lambda r: sum(1 for x in live if f":{r.pid}:" in (x["lease_owner"] or "")))
    orphans = {x["id"] for x in live if f":{victim.pid}:" in (x["lease_owner"] or "")}
    victim.kill()
    killed = time.monotonic()
    print(f"  SIGKILLed replica pid {victim.pid} holding {len(orphans)} live job(s)", file=sys.stderr)
    pending = set(orphans)
    while pending and time.monotonic() - killed < 60:
        for r in read_rows(arm, home):
            if r["id"] in pending and (
                r["status"] not in ("queued", "running") or f":{victim.pid}:" not in (r["lease_owner"] or "")
            ):
                pending.discard(r["id"])
                arm.takeover.append(time.monotonic() - killed)
        await anyio.sleep(0.05)
    arm.errors += [f"{job_id} not taken over within 60 s" for job_id in pending]


def _prompt(job: Any) -> str:
    return str(prompt_of(job.body))


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def _max(values: list[float]) -> str:
    return f"{max(values):.2f}" if values else "-"


def report(arms: list[Arm], median: float, rate: float) -> str:
    lines = [
        f"{arms[0].jobs} jobs of {SLUG}, log-normal durations (median {median:g} s, sigma 0.4), "
        f"{rate:g} submitted a second, adaptive polls, no provider rate cap",
        "",
        "| arm | processes | journal | lost | duplicate submits | downloads / job | status requests / job "
        "| completion → URL known, median (s) | completion → result median / max (s) "
        "| takeover max (s) | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in arms:
        lines.append(
            f"| {a.name} | {a.replicas}{' (1 SIGKILLed)' if a.kill else ''} | "
            f"{'PostgreSQL' if a.database else 'SQLite'}{' + webhooks' if a.webhooks else ''} | {a.lost} | "
            f"{a.duplicates} | {a.downloads:.3f} | {a.status_requests:.2f} | "
            f"{_median(a.notice)} | {_median(a.latency)} / {_max(a.latency)} | "
            f"{_max(a.takeover) if a.kill else '-'} | {a.seconds:.0f} |"
        )
    for a in arms:
        if a.kill:
            lines.append(
                f"\ntakeover: {len(a.takeover)} orphaned jobs, median {_median(a.takeover)} s, "
                f"max {_max(a.takeover)} s (lease 10 s)"
            )
        for error in a.errors[:5]:
            lines.append(f"{a.name}: {error}")
    return "\n".join(lines)


async def main(jobs: int, median: float, rate: float, only: set[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="wan-replicas-") as tmp, temporary_postgres() as server:
        work = Path(tmp)
        arms: list[Arm] = []
        plans: list[Callable[[], Arm]] = [
            lambda: Arm("single", 1, None),
            lambda: Arm("replicas", 3, fresh_database(server), kill=True),
            lambda: Arm("webhooks", 3, fresh_database(server), webhooks=True),
        ]
        for plan in plans:
            arm = plan()
            if only and arm.name not in only:
                continue
            print(f"arm {arm.name} ...", file=sys.stderr)
            arms.append(await run_arm(arm, jobs, median, rate, work))
            if arm.database:
                drop_database(server, arm.database)
    print(report(arms, median, rate))
    ok = all(a.lost == 0 and a.duplicates == 0 and a.downloads <= 1.05 for a in arms)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--median", type=float, default=30.0, help="median job duration, seconds")
    parser.add_argument("--rate", type=float, default=6.0, help="jobs submitted per second")
    parser.add_argument("--arms", default="", help="comma-separated: single,replicas,webhooks (default all)")
    options = parser.parse_args()
    arms = {a.strip() for a in options.arms.split(",") if a.strip()}
    sys.exit(anyio.run(main, options.jobs, options.median, options.rate, arms))
