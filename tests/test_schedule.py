"""The poll schedule: its pure parts, the per-model duration model, the planner, the emulator's drawn
durations, the settings that choose it, and the runner using it."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.catalog import ModelSpec, load_catalog
from server.errors import ConfigError
from server.jobs.schedule import (
    MAX_SAMPLES,
    DurationModel,
    LogNormal,
    Normal,
    PollPlanner,
    job_seconds,
    median,
    next_poll_in,
    peak_chance,
    progress_finish,
    with_fallback,
)
from server.jobs.store import Job
from server.sandbox import EmuJob, Emulator
from server.sandbox.emulator import LogNormalDurations
from server.settings import DEFAULT_POLL, PollPolicy, Settings
from tests.conftest import make_settings
from tests.mcp_helpers import minimal_arguments, structured

SPECS = {spec.slug: spec for spec in load_catalog().select(None)}
WAVESPEED_40S = SPECS["wan22_i2v_480p_lora_ultra_fast"]
VTRIX = SPECS["wan22_i2v_flash"]


def new_job(spec: ModelSpec, **changes: object) -> Job:
    job = Job(
        id="job-1",
        model=spec.slug,
        provider=spec.provider,
        status="running",
        submit_state="accepted",
        params={},
        request_hash="h",
        created_at=1000.0,
        updated_at=1000.0,
        provider_job_id="p-1",
        submitted_at=1000.0,
    )
    return replace(job, **changes)


# --- distributions and the gap rule ---------------------------------------------------------------


def test_distributions_put_half_their_mass_below_the_median() -> None:
    assert LogNormal.from_median(40).sf(40) == pytest.approx(0.5)
    assert LogNormal.from_median(40).sf(0) == 1.0
    assert LogNormal.from_median(40).sf(40 * math.exp(0.3)) == pytest.approx(0.1587, abs=1e-4)
    assert Normal(10, 2).sf(12) == pytest.approx(0.1587, abs=1e-4)
    assert median(LogNormal.from_median(123)) == pytest.approx(123, rel=1e-3)
    assert median(with_fallback(LogNormal.from_median(50), 50)) == pytest.approx(50, rel=1e-3)


def test_next_poll_comes_when_the_chance_of_having_finished_reaches_the_target() -> None:
    finish = LogNormal.from_median(40)
    for elapsed in (20.0, 35.0, 40.0, 50.0):
        gap = next_poll_in(elapsed, finish, chance=0.05, min_gap=0.01, max_gap=100)
        assert finish.sf(elapsed + gap) == pytest.approx(finish.sf(elapsed) * 0.95, rel=1e-3)


def test_next_poll_stays_within_the_bounds() -> None:
    finish = LogNormal.from_median(40)
    assert next_poll_in(0.0, finish, chance=0.05, min_gap=0.5, max_gap=10) == 10  # nothing ends early
    assert next_poll_in(40.0, Normal(40.5, 0.1), chance=0.05, min_gap=5, max_gap=10) == 5
    assert next_poll_in(40.0, Normal(0, 0.001), chance=0.1, min_gap=0.5, max_gap=10) == 10


def test_the_peak_chance_is_the_peak_gap_times_the_hazard_at_the_median() -> None:
    # For a log-normal the hazard at the median is 2 * phi(0) / (sigma * median).
    for typical in (20.0, 40.0, 120.0):
        hazard = 2 / math.sqrt(2 * math.pi) / (0.3 * typical)
        assert peak_chance(LogNormal.from_median(typical), 0.8) == pytest.approx(0.8 * hazard, rel=0.01)
    assert peak_chance(Normal(60, 0.01), 0.8) == 0.5


@pytest.mark.parametrize("typical", [20.0, 40.0, 120.0])
def test_polls_are_about_peak_interval_apart_where_jobs_usually_end(typical: float) -> None:
    finish = with_fallback(LogNormal.from_median(typical), typical)
    chance = peak_chance(finish, 0.8)
    gap = next_poll_in(typical, finish, chance=chance, min_gap=0.1, max_gap=10)
    assert gap == pytest.approx(0.8, abs=0.1)
    # ...and far apart where they rarely do.
    assert next_poll_in(0.2 * typical, finish, chance=chance, min_gap=0.1, max_gap=10) > 5 * 0.8


# --- progress ---------------------------------------------------------------------------------------


def test_progress_readings_extrapolate_to_the_end() -> None:
    readings = [(10.0, 0.17), (20.0, 0.33), (30.0, 0.5)]
    end = progress_finish(readings)
    assert end is not None
    assert end.mean == pytest.approx(60, abs=0.5)
    assert 0.5 < end.sd < 4  # rounding, plus trust that shrinks as the end nears
    one = progress_finish([(25.0, 0.5)], started=5.0)
    assert one is not None
    assert one.mean == pytest.approx(45)


def test_progress_that_cannot_say_gives_no_estimate() -> None:
    assert progress_finish([]) is None
    assert progress_finish([(10.0, 0.0)]) is None
    assert progress_finish([(10.0, 0.3)], started=10.0) is None
    assert progress_finish([(10.0, 0.3), (20.0, 0.3)]) is None
    # a reading at the stall point only says "nearly done": it is not fitted
    stalled = progress_finish([(10.0, 0.2), (20.0, 0.4), (48.0, 0.95)])
    assert stalled is not None
    assert stalled.mean == pytest.approx(50, abs=0.5)


# --- the duration model -------------------------------------------------------------------------------


def test_the_duration_model_starts_at_the_catalog_prior_and_learns() -> None:
    model = DurationModel(40)
    assert model.distribution() == LogNormal(math.log(40), 0.3)
    rng = random.Random(1)
    for _ in range(200):
        model.add(rng.lognormvariate(math.log(70), 0.1))
    learned = model.distribution()
    assert model.samples == MAX_SAMPLES
    assert learned.median == pytest.approx(70, rel=0.08)
    assert 0.08 < learned.sigma < 0.15
    model.add(-1)
    model.add(math.inf)
    assert model.samples == MAX_SAMPLES


def test_job_seconds_prefers_the_providers_inference_time() -> None:
    done = new_job(WAVESPEED_40S, status="completed", finished_at=1042.0)
    assert job_seconds(replace(done, inference_ms=38_500)) == 38.5
    assert job_seconds(done) == 42.0
    assert job_seconds(replace(done, status="failed")) is None
    assert job_seconds(replace(done, submitted_at=None)) is None


# --- the planner ----------------------------------------------------------------------------------------


def test_the_planner_learns_a_models_durations_from_history_and_completions() -> None:
    asked: list[str] = []

    def history(slug: str) -> list[float]:
        asked.append(slug)
        return [80.0] * 20

    planner = PollPlanner(DEFAULT_POLL, history=history)
    job = new_job(WAVESPEED_40S)
    # 20 jobs of 80 s outweigh the catalog's 40 s (counted as 8 jobs)
    assert median(planner.finish(job, WAVESPEED_40S)) == pytest.approx(
        40 ** (8 / 28) * 80 ** (20 / 28), rel=0.01
    )
    planner.observe(replace(job, video_url="https://v", inference_ms=81_000), WAVESPEED_40S, 1082.0)
    assert asked == [WAVESPEED_40S.slug]
    assert planner.model(WAVESPEED_40S.slug, WAVESPEED_40S).samples == 21


def test_the_planner_learns_the_bracketed_end_when_there_is_no_inference_time() -> None:
    planner = PollPlanner(DEFAULT_POLL)
    job = new_job(VTRIX)
    planner.observe(replace(job, progress=0.9), VTRIX, 1050.0)
    planner.observe(replace(job, video_url="https://v", progress=1.0), VTRIX, 1060.0)
    learned = planner.model(VTRIX.slug, VTRIX)
    assert learned.samples == 1
    planner.forget(job.id)
    assert planner.finish(job, VTRIX) == with_fallback(learned.distribution(), learned.distribution().median)


def test_a_quick_job_is_learned_only_once_the_jobs_sent_before_it_have_ended() -> None:
    planner = PollPlanner(DEFAULT_POLL)
    model = planner.model(WAVESPEED_40S.slug, WAVESPEED_40S)
    slow = new_job(WAVESPEED_40S, id="slow", submitted_at=1000.0)
    quick = new_job(WAVESPEED_40S, id="quick", submitted_at=1001.0)
    later = new_job(WAVESPEED_40S, id="later", submitted_at=1002.0)
    for job in (slow, quick, later):
        planner.observe(job, WAVESPEED_40S, 1005.0)
    planner.observe(replace(quick, video_url="https://v", inference_ms=20_000), WAVESPEED_40S, 1021.0)
    assert model.samples == 0  # "slow", sent before it, is still running
    planner.observe(replace(slow, video_url="https://v", inference_ms=70_000), WAVESPEED_40S, 1070.0)
    assert model.samples == 2
    planner.forget("later")  # its poller stopped without an end: it no longer holds anything back
    assert model.samples == 2


def test_the_planner_aims_at_the_end_that_progress_points_to() -> None:
    planner = PollPlanner(DEFAULT_POLL)
    job = new_job(VTRIX)  # the catalog says 60 s; this one runs 100 s
    for elapsed in (0.0, 10.0, 20.0, 30.0):
        planner.observe(replace(job, progress=round(elapsed / 100, 2)), VTRIX, 1000.0 + elapsed)
    assert median(planner.finish(job, VTRIX)) == pytest.approx(100, abs=2)
    assert planner.next_delay(job, VTRIX, 1030.0) == DEFAULT_POLL.max_interval
    planner.observe(replace(job, progress=0.97), VTRIX, 1097.0)
    assert planner.next_delay(job, VTRIX, 1097.0) < 4


def simulate(
    spec: ModelSpec, jobs: int, *, progress: bool, fixed: float | None = None
) -> tuple[float, float]:
    """Median lateness and mean polls per job for log-normal jobs (sigma 0.3) polled by the planner."""
    rng = random.Random(7)
    planner = PollPlanner(DEFAULT_POLL)
    late: list[float] = []
    polls: list[int] = []
    for n in range(jobs):
        runs = rng.lognormvariate(math.log(spec.typical_seconds), 0.3)
        job = new_job(spec, id=f"job-{n}", submitted_at=0.0)
        elapsed, count = 0.0, 0
        while True:
            count += 1
            if elapsed >= runs:
                break
            reading = round(min(0.95, elapsed / runs), 2) if progress else None
            job = replace(job, progress=reading)
            planner.observe(job, spec, elapsed)
            elapsed += (fixed or planner.next_delay(job, spec, elapsed)) + 0.01  # 10 ms a request
        done = replace(job, video_url="https://v", inference_ms=None if progress else int(runs * 1000))
        planner.observe(done, spec, elapsed)
        planner.forget(job.id)
        late.append(elapsed - runs)
        polls.append(count)
    return statistics.median(late), statistics.mean(polls)


def test_without_progress_the_schedule_beats_a_1s_poller_with_half_the_polls() -> None:
    fixed_late, fixed_polls = simulate(WAVESPEED_40S, 300, progress=False, fixed=1.0)
    late, polls = simulate(WAVESPEED_40S, 300, progress=False)
    assert late <= fixed_late
    assert polls <= fixed_polls / 2


def test_with_progress_the_schedule_needs_a_fraction_of_the_polls() -> None:
    fixed_late, fixed_polls = simulate(VTRIX, 200, progress=True, fixed=1.0)
    late, polls = simulate(VTRIX, 200, progress=True)
    assert late <= fixed_late * 0.8
    assert polls <= fixed_polls / 5


# --- the emulator's drawn durations ------------------------------------------------------------------


def emu_job(model: str, prompt: str) -> EmuJob:
    from server.sandbox import VideoSpec

    return EmuJob(
        id="e", provider="wavespeed", model=model, body={"prompt": prompt}, video=VideoSpec("", 5, ()), cost=0
    )


def test_lognormal_durations_are_seeded_per_model_and_per_key() -> None:
    medians = {"m40": 40.0}
    draws = [LogNormalDurations(medians, seed=3)(emu_job("m40", "a")) for _ in range(2)]
    assert draws[0] == draws[1]
    stream = LogNormalDurations(medians, seed=3)
    many = [stream(emu_job("m40", "a")) for _ in range(2000)]
    assert statistics.median(many) == pytest.approx(40, rel=0.05)
    assert statistics.stdev(math.log(d) for d in many) == pytest.approx(0.3, rel=0.08)
    keyed = LogNormalDurations(medians, seed=3, key=lambda job: str(job.body["prompt"]))
    assert keyed(emu_job("m40", "x")) == keyed(emu_job("m40", "x")) != keyed(emu_job("m40", "y"))
    other = LogNormalDurations(medians, seed=3, default=1000.0)(emu_job("unknown", "a"))
    assert other > 200


@pytest.mark.anyio
async def test_an_emulated_job_with_a_drawn_duration_ends_by_time(tmp_path: Path) -> None:
    import httpx

    emulator = Emulator(wavespeed_key="k")
    durations = iter([3600.0, 0.0])
    emulator.duration_sampler = lambda job: next(durations)
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://testserver") as client:
        headers = {"Authorization": "Bearer k"}
        body = {"image": "https://example.com/a.png", "prompt": "p"}
        url = "/api/v3/wavespeed-ai/wan-2.2/i2v-480p-ultra-fast"
        slow, quick = [
            (await client.post(url, json=body, headers=headers)).json()["data"]["id"] for _ in "ab"
        ]
        result = "/api/v3/predictions/{}/result"
        slow_status = (await client.get(result.format(slow), headers=headers)).json()["data"]
        quick_status = (await client.get(result.format(quick), headers=headers)).json()["data"]
    assert slow_status["status"] == "processing"  # no "created" first: it runs from the start
    assert quick_status["status"] == "completed"
    assert quick_status["timings"]["inference"] == 1  # its drawn 0 s, not the time until the poll
    assert emulator.jobs[slow].duration == 3600.0


# --- settings and the runner ---------------------------------------------------------------------------


def test_the_server_polls_adaptively_unless_given_an_interval() -> None:
    assert Settings.model_fields["poll"].default == DEFAULT_POLL
    assert DEFAULT_POLL.adaptive
    assert not PollPolicy().adaptive  # an explicit policy keeps its fixed interval
    assert Settings.from_env({}).poll == DEFAULT_POLL
    fixed = Settings.from_env({"WAN_MCP_POLL_INTERVAL": "1"}).poll
    assert (fixed.adaptive, fixed.interval, fixed.provider_rate) == (False, 1.0, DEFAULT_POLL.provider_rate)
    with pytest.raises(ConfigError, match="WAN_MCP_POLL_INTERVAL"):
        Settings.from_env({"WAN_MCP_POLL_INTERVAL": "soon"})


@pytest.mark.anyio
async def test_the_runner_plans_polls_from_the_schedule(tmp_path: Path, emulator: Emulator) -> None:
    # Seconds scaled down: the catalog's 40 s prior is capped by max_interval, the job runs 0.3 s.
    poll = PollPolicy(adaptive=True, interval=0.05, min_interval=0.01, max_interval=0.1, peak_interval=0.05)
    settings = make_settings(tmp_path, poll=poll)
    emulator.duration_sampler = lambda job: 0.3
    slug = WAVESPEED_40S.slug
    server = build_server(settings, transport=emulator.transport())
    async with Client(server) as client:
        with anyio.fail_after(10):
            result = await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug))
        assert structured(result)["status"] == "completed"
        polls = [call for call in emulator.calls if call.route == "ws.result"]
        gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
        assert 2 <= len(polls) <= 12
        assert all(gap >= 0.05 for gap in gaps)  # planned gaps, not the interval-0 spin of the tests
        (submit,) = [call for call in emulator.calls if call.route == "ws.submit"]
        assert polls[0].at - submit.at >= 0.09  # the submit's answer was the first status
