"""Reliability under faults, crashes, bad input and load: the scenarios of ``bench/`` at test size.

``bench/reliability.py`` runs the same code with bigger counts and prints the figures. Each bug
these scenarios found has its own smallest test in ``tests/test_reliability_bugs.py``; one that is
open is listed in ``bench.fuzz.KNOWN_BUGS`` when the fuzz can hit it, so the run keeps hunting.
"""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from bench.common import MIB
from bench.crashes import MOMENTS, run_crash_scenario
from bench.faults import Chaos, label, run_fault_scenario
from bench.fuzz import fuzz_in_memory, fuzz_stdio
from bench.load import run_load_http, run_load_stdio
from tests.contract import TOOL_NAMES

pytestmark = pytest.mark.slow


@pytest.mark.anyio
async def test_faults_at_a_fifth_of_requests_lose_nothing_and_submit_nothing_twice(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        report = await run_fault_scenario(tmp_path / "home", jobs=60, rate=0.2, seed=7)
    assert report.crashes == []
    assert report.hangs == []
    assert report.problems == []
    assert report.ledger.duplicates == 0
    assert report.ledger.orphans == []
    assert report.ledger.shared == []
    assert report.ledger.wrong_adoptions == []
    assert report.refused_yet_created == []
    assert report.lost == 0
    # Every job ended, and every kind of fault was met.
    assert sum(report.outcomes.values()) == 60
    assert set(report.outcomes) <= {
        "completed",
        "completed (video not saved)",
        "failed",
        "refused",
        "unconfirmed",
    }
    assert report.outcomes["completed"] >= 30
    kinds = {"429 + Retry-After", "429", "5xx", "timeout", "connection reset", "malformed JSON", "slow body"}
    assert kinds <= set(report.faults)
    assert report.faults["failed job"] >= 1
    assert sum(report.faults.values()) >= 60


def test_chaos_faults_come_at_the_set_rate_and_only_on_routes_that_can_fail() -> None:
    chaos = Chaos(random.Random(3), rate=0.25, timeout=0.5)
    faults = [chaos("ws.result") for _ in range(2000)]
    share = sum(f is not None for f in faults) / len(faults)
    assert 0.2 < share < 0.3
    assert {label(f) for f in faults if f is not None} == {
        "429 + Retry-After",
        "429",
        "5xx",
        "timeout",
        "connection reset",
        "malformed JSON",
        "slow body",
    }
    assert {chaos("ws.balance") for _ in range(200)} == {None}
    assert "truncated download" in {label(f) for f in (chaos("file") for _ in range(500)) if f is not None}


@pytest.mark.anyio
async def test_sigkill_at_every_moment_of_a_jobs_life_loses_nothing(tmp_path: Path) -> None:
    with anyio.fail_after(150):
        report = await run_crash_scenario(tmp_path / "home", cycles=10, seed=11)
    assert report.problems == []
    assert report.lost == []
    assert report.ledger.duplicates == 0
    assert report.ledger.shared == []
    assert report.ledger.wrong_adoptions == []
    assert set(report.kills) == set(MOMENTS)
    assert report.survived == report.cycles
    assert report.received
    assert report.outcomes["completed"] >= 10
    assert set(report.outcomes) <= {"completed", "failed", "unconfirmed"}
    # No half-written file under a final name, and the restarted server swept the killed ones' temp files.
    assert report.files.undecodable == []
    assert report.files.strays == []
    assert report.files.temp_leftovers == []
    assert report.files.videos == report.outcomes["completed"]


def test_arbitrary_arguments_to_every_tool_never_crash_the_server(tmp_path: Path) -> None:
    report = fuzz_in_memory(tmp_path / "home", examples_per_tool=25)
    assert report.crashes == [], "\n\n".join(report.crashes)
    assert report.problems == []
    assert sorted(report.cases) == TOOL_NAMES
    assert min(report.cases.values()) == 25
    assert report.errors > report.tried // 2


def test_arbitrary_arguments_over_stdio_keep_the_stream_clean(tmp_path: Path) -> None:
    report = fuzz_stdio(tmp_path / "home", examples_per_tool=6)
    assert report.crashes == [], "\n\n".join(report.crashes)
    assert report.problems == []
    assert sorted(report.cases) == TOOL_NAMES
    assert report.tried == 6 * len(TOOL_NAMES)


@pytest.mark.anyio
async def test_hundreds_of_waiting_calls_over_stdio_all_get_progress_and_a_result(tmp_path: Path) -> None:
    with anyio.fail_after(150):
        report = await run_load_stdio(tmp_path / "home", calls=100)
    assert report.problems == []
    assert report.calls == report.completed == 200
    assert report.progress_events >= 2 * report.calls
    # A stall would show as a free call that waits seconds for its answer.
    assert report.worst_round_trip < 10
    assert report.worst_lag < 1
    assert report.rss_growth < 32 * MIB, (report.baseline_rss // MIB, report.final_rss // MIB)


@pytest.mark.anyio
async def test_hundreds_of_waiting_calls_over_streamable_http_all_get_progress_and_a_result(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(150):
        report = await run_load_http(tmp_path / "home", calls=100)
    assert report.problems == []
    assert report.calls == report.completed == 200
    assert report.progress_events >= 2 * report.calls
    assert report.worst_lag < 1
    assert report.rss_growth < 48 * MIB, (report.baseline_rss // MIB, report.final_rss // MIB)
