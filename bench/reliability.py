"""Reliability figures: faults, crashes, bad input and load, with the scenarios the tests run.

    .venv/bin/python bench/reliability.py            # the full run, a few minutes on 2 cores
    .venv/bin/python bench/reliability.py --quick    # the tests' sizes

Prints a Markdown table (bench/RESULTS.md keeps one) and exits 1 when a figure that must be 0 is
not. Every scenario runs against the built-in provider emulator; nothing is paid.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import anyio

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MIB
from bench.crashes import CrashReport, run_crash_scenario
from bench.faults import FaultReport, run_fault_scenario
from bench.fuzz import KNOWN_BUGS, FuzzReport, fuzz_in_memory, fuzz_stdio
from bench.load import LoadReport, run_load_http, run_load_stdio


@dataclass(frozen=True)
class Sizes:
    fault_jobs: int
    crash_cycles: int
    fuzz_examples: int
    fuzz_stdio_examples: int
    load_calls: int


FULL = Sizes(fault_jobs=200, crash_cycles=20, fuzz_examples=100, fuzz_stdio_examples=20, load_calls=300)
QUICK = Sizes(fault_jobs=60, crash_cycles=10, fuzz_examples=25, fuzz_stdio_examples=6, load_calls=100)


@dataclass
class Results:
    faults: FaultReport
    crashes: CrashReport
    fuzz: list[FuzzReport]
    load: list[LoadReport]
    seconds: float


def run(sizes: Sizes, workdir: Path, say: Callable[[str], None]) -> Results:
    """Every scenario in turn, each in a fresh ``WAN_MCP_HOME`` under ``workdir``."""
    started = time.perf_counter()
    # Load first: "this process" is the server in the HTTP case, and its memory should be the
    # server's, not what the fuzz's 30 MB strings left behind.
    say(f"load: {sizes.load_calls} concurrent calls a round, stdio then Streamable HTTP")
    load = [
        anyio.run(lambda: run_load_stdio(workdir / "load-stdio", calls=sizes.load_calls)),
        anyio.run(lambda: run_load_http(workdir / "load-http", calls=sizes.load_calls)),
    ]
    say(f"faults: {sizes.fault_jobs} jobs")
    faults = anyio.run(lambda: run_fault_scenario(workdir / "faults", jobs=sizes.fault_jobs))
    say(f"crashes: {sizes.crash_cycles} SIGKILL cycles")
    crashes = anyio.run(lambda: run_crash_scenario(workdir / "crashes", cycles=sizes.crash_cycles))
    say(f"fuzz: {sizes.fuzz_examples} cases a tool in memory, {sizes.fuzz_stdio_examples} over stdio")
    fuzz = [
        fuzz_in_memory(workdir / "fuzz-memory", examples_per_tool=sizes.fuzz_examples),
        fuzz_stdio(workdir / "fuzz-stdio", examples_per_tool=sizes.fuzz_stdio_examples),
    ]
    return Results(faults, crashes, fuzz, load, time.perf_counter() - started)


def table(results: Results) -> tuple[str, list[str]]:
    """The Markdown table, and the figures that must be 0 but are not."""
    faults, crashes, fuzz, load = results.faults, results.crashes, results.fuzz, results.load
    failing: list[str] = []
    rows: list[tuple[str, str]] = []

    def must_be_zero(name: str, value: int, detail: str = "") -> None:
        rows.append((f"{name} (must be 0)", f"{value}{detail}"))
        if value:
            failing.append(f"{name}: {value}")

    crash_jobs = sum(crashes.outcomes.values())
    load_calls = sum(r.calls for r in load)
    rows.append(
        (
            "jobs run",
            f"{faults.jobs + crash_jobs + load_calls} ({faults.jobs} faults, {crash_jobs} crashes, "
            f"{load_calls} load)",
        )
    )
    kinds = ", ".join(f"{kind} {count}" for kind, count in faults.faults.most_common())
    rows.append(("faults injected", f"{sum(faults.faults.values())}: {kinds}"))
    rows.append(("fault run outcomes", _counts(faults.outcomes)))
    rows.append(
        ("lost answers left unconfirmed, said why (WaveSpeed, ambiguous)", str(len(faults.ambiguous)))
    )
    moments = ", ".join(f"{moment} {count}" for moment, count in crashes.kills.items())
    rows.append(("kills survived", f"{crashes.survived} of {sum(crashes.kills.values())} ({moments})"))
    rows.append(("crash run outcomes", _counts(crashes.outcomes)))
    wrong = len(faults.ledger.wrong_adoptions) + len(crashes.ledger.wrong_adoptions)
    lost = faults.lost + len(crashes.lost) + len(crashes.ledger.wrong_adoptions)
    must_be_zero("lost jobs", lost, f" ({wrong} by a wrong adoption)" if wrong else "")
    duplicates = faults.ledger.duplicates + crashes.ledger.duplicates
    must_be_zero("duplicate submissions", duplicates)
    must_be_zero(
        "half-written or undecodable videos", len(crashes.files.undecodable) + len(crashes.files.strays)
    )
    rows.append(("videos decoded after the kills", str(crashes.files.videos)))
    must_be_zero("temporary files left after the restarts", len(crashes.files.temp_leftovers))
    rows.append(("fuzz cases tried", " + ".join(f"{r.tried} {r.transport}" for r in fuzz)))
    known = sum(sum(r.known.values()) for r in fuzz)
    crash_count = sum(len(r.crashes) for r in fuzz) + len(faults.crashes)
    must_be_zero("crashes", crash_count, f" (known bugs hit {known} times)" if known else "")
    must_be_zero("hangs", len(faults.hangs))
    must_be_zero(
        "broken promises", len(faults.problems) + len(crashes.problems) + sum(len(r.problems) for r in load)
    )
    for report in load:
        rows.append(
            (
                f"load over {report.transport}",
                f"{report.completed}/{report.calls} calls completed, "
                f"{report.progress_events} progress notifications, {report.seconds:.0f} s",
            )
        )
    http = next(r for r in load if r.transport != "stdio")
    stdio = next(r for r in load if r.transport == "stdio")
    rows.append(
        ("worst event-loop lag (server, Streamable HTTP in-process)", f"{http.worst_lag * 1000:.0f} ms")
    )
    rows.append(
        ("worst round trip of a free call under load (stdio)", f"{stdio.worst_round_trip * 1000:.0f} ms")
    )
    for report in load:
        rows.append(
            (
                f"memory, {report.transport} ({'server process' if report is stdio else 'this process'})",
                f"baseline {report.baseline_rss / MIB:.0f} MiB, peak {report.peak_rss / MIB:.0f} MiB, "
                f"after {report.final_rss / MIB:.0f} MiB",
            )
        )
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines), failing


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common())


def details(results: Results) -> list[str]:
    """Each broken promise, for the reader of a failing run."""
    out: list[str] = []
    out += [
        f"wrong adoption: {w}"
        for w in results.faults.ledger.wrong_adoptions + results.crashes.ledger.wrong_adoptions
    ]
    out += [
        f"lost: {w}"
        for w in results.crashes.lost + results.faults.refused_yet_created + results.faults.ledger.orphans
    ]
    out += [f"problem: {p}" for p in results.faults.problems + results.crashes.problems]
    out += [f"problem: {p}" for r in results.load for p in r.problems]
    out += [f"crash: {c}" for r in results.fuzz for c in r.crashes] + [
        f"crash: {c}" for c in results.faults.crashes
    ]
    out += [f"hang: {h}" for h in results.faults.hangs]
    out += [f"temporary file left: {name}" for name in results.crashes.files.temp_leftovers]
    out += [f"file: {f}" for f in results.crashes.files.undecodable + results.crashes.files.strays]
    for bug in KNOWN_BUGS:
        hits = sum(r.known[bug.name] for r in results.fuzz)
        if hits:
            out.append(f"known bug '{bug.name}' hit {hits} times (see {bug.test})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the tests' sizes instead of the full run")
    args = parser.parse_args(argv)
    # The scenarios break things on purpose; the server's own complaints would drown the table.
    logging.disable(logging.CRITICAL)
    sizes = QUICK if args.quick else FULL

    def say(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="wan-reliability-") as workdir:
        results = run(sizes, Path(workdir), say)
    text, failing = table(results)
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    machine += f", Python {platform.python_version()}"
    print(f"Reliability run of {date.today().isoformat()} on {machine}; {results.seconds:.0f} s in all.\n")
    print(text)
    notes = details(results)
    if notes:
        print("\n" + "\n".join(f"- {note}" for note in notes))
    print("\n" + ("FAILED: " + "; ".join(failing) if failing else "every figure that must be 0 is 0"))
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
