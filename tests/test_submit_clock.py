"""Where a job's start is placed: inside its submit's round trip, by the provider's ``created_at``
read through the provider's clock offset; unit cases, then the real server against the emulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mcp import Client

from server.app import build_server
from server.jobs.clock import SubmitClock
from server.jobs.store import SqliteStore
from server.sandbox import Emulator
from server.sandbox.faults import Fault
from tests.conftest import make_settings
from tests.mcp_helpers import minimal_arguments, structured

SKEW = 7.0  # the provider's clock is this far ahead of ours
VTRIX_SLUG = "wan22_i2v_flash"


def test_without_a_created_at_the_answer_is_the_start() -> None:
    assert SubmitClock().started("wavespeed", 100.0, 100.4, None) == 100.4


def test_the_quickest_submit_sets_the_offset_and_a_slow_one_is_placed_by_it() -> None:
    clock = SubmitClock()
    # Quick: sent 100.00, answered 100.02, created at 100.01 on our clock.
    assert clock.started("wavespeed", 100.0, 100.02, 100.01 + SKEW) == pytest.approx(100.01)
    # Slow: the job was made at once (200.05), its answer took 0.9 s to come back.
    assert clock.started("wavespeed", 200.0, 200.95, 200.05 + SKEW) == pytest.approx(200.05)
    # Without the quick one, the slow one alone can only say "the middle of its round trip".
    assert SubmitClock().started("wavespeed", 200.0, 200.95, 200.05 + SKEW) == pytest.approx(200.475)


def test_a_start_never_leaves_the_round_trip_and_providers_keep_their_own_offsets() -> None:
    clock = SubmitClock()
    clock.started("wavespeed", 100.0, 100.02, 100.01 + SKEW)
    # The provider's clock jumped by a minute: the start stays inside what was seen.
    assert clock.started("wavespeed", 300.0, 300.5, 300.2 + SKEW + 60) == 300.5
    assert clock.started("wavespeed", 400.0, 400.5, 400.2 + SKEW - 60) == 400.0
    # Vtrix's clock is right: WaveSpeed's offset does not apply to it.
    clock.started("vtrix", 500.0, 500.02, 500.01)
    assert clock.started("vtrix", 600.0, 600.9, 600.1) == pytest.approx(600.1)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("slug", "route"), [("wan22_i2v_480p_ultra_fast", "ws.submit"), (VTRIX_SLUG, "vx.submit")]
)
async def test_a_job_whose_submit_answer_was_slow_counts_from_when_the_provider_took_it(
    tmp_path: Path, emulator: Emulator, slug: str, route: str
) -> None:
    emulator.hold = True
    emulator.clock_skew = SKEW
    settings = make_settings(tmp_path / "home")
    answered: dict[str, float] = {}
    async with Client(build_server(settings, transport=emulator.transport())) as client:
        for prompt, fault in (("quick", None), ("slow", Fault.slow(0.8, chunks=2))):
            if fault is not None:
                emulator.inject(route, fault)
            arguments = minimal_arguments(slug, prompt=prompt, wait_seconds=0)
            record = structured(await client.call_tool(f"{slug}_generate_video", arguments))
            answered[prompt] = time.time()
            assert record["status"] in ("queued", "running"), record
        emulator.release()
    store = SqliteStore(settings.database_path)
    try:
        rows = {row.params["prompt"]: row for row in store.select_now("provider_job_id IS NOT NULL")}
    finally:
        store.close_now()
    for prompt, row in rows.items():
        assert row.submitted_at is not None
        assert row.provider_job_id is not None
        made = emulator.jobs[row.provider_job_id].created_at.timestamp() - SKEW  # on our clock
        # Right to within half the quick submit's round trip (in-process: milliseconds; a loaded box
        # may take a tenth or two); counting from the slow answer would be 0.8 s off.
        assert abs(row.submitted_at - made) < 0.25, (prompt, row.submitted_at - made)
    # The slow submit's answer came 0.8 s after the job was made; the journal says when it was made.
    slow = rows["slow"].submitted_at
    assert slow is not None
    assert answered["slow"] - slow >= 0.7
