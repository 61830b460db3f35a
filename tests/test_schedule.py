"""The poll schedule: its pure parts, what it learns, the planner on a fake clock (no sleeping), the
emulator's drawn durations, the settings that choose it, and the server using it over stdio."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from mcp import Client

from bench.common import stdio_session
from bench.polling import Condition, history_rows, run_virtual, simulate, targets
from server.app import build_server
from server.catalog import ModelSpec, load_catalog
from server.errors import ConfigError
from server.jobs.schedule import (
    LATE_MEDIAN,
    LATE_P90,
    MIN_WARM,
    DurationModel,
    LogNormal,
    Normal,
    PollPlanner,
    Predictive,
    _Scorer,  # pyright: ignore[reportPrivateUsage]
    calibrate,
    cold_gap,
    job_seconds,
    kind_of,
    next_poll_in,
    plan,
    progress_finish,
    wait_share,
    with_fallback,
)
from server.jobs.store import Job
from server.sandbox import EmuJob, Emulator
from server.sandbox.emulator import LogNormalDurations
from server.settings import DEFAULT_POLL, PollPolicy, Settings
from tests.conftest import make_settings
from tests.mcp_helpers import minimal_arguments, stdio_server, structured

SPECS = {spec.slug: spec for spec in load_catalog().select(None)}
ULTRA_30S = SPECS["wan22_i2v_480p_ultra_fast"]
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


def done_rows(spec: ModelSpec, seconds: list[float], **params: object) -> list[Job]:
    return [replace(row, params=dict(params)) for row in history_rows(spec, seconds)]


def expected_polls(times: list[float], finish: LogNormal) -> float:
    """Polls a job ending as ``finish`` says gets from poll times ``times``."""
    total, previous = 0.0, 0.0
    for n, t in enumerate(times, start=1):
        total += n * (finish.sf(previous) - finish.sf(t))
        previous = t
    return total


# --- distributions and the rules ------------------------------------------------------------------


def test_log_normal_quantiles_and_hazard() -> None:
    finish = LogNormal.from_median(40, 0.3)
    assert finish.sf(40) == pytest.approx(0.5)
    assert finish.sf(0) == 1.0
    assert finish.sf(finish.quantile(1.0)) == pytest.approx(0.1587, abs=1e-4)
    step = 0.01
    hazard = (finish.sf(40 - step) - finish.sf(40 + step)) / (2 * step) / 0.5
    assert finish.hazard_at_median == pytest.approx(hazard, rel=1e-3)
    assert Normal(10, 2).sf(12) == pytest.approx(0.1587, abs=1e-4)


def test_next_poll_comes_when_the_chance_of_having_finished_reaches_the_target() -> None:
    finish = LogNormal.from_median(40, 0.3)
    for elapsed in (20.0, 35.0, 40.0, 50.0):
        gap = next_poll_in(elapsed, finish, chance=0.05, min_gap=0.01, max_gap=100)
        assert finish.sf(elapsed + gap) == pytest.approx(finish.sf(elapsed) * 0.95, rel=1e-3)
    assert next_poll_in(0.0, finish, chance=0.05, min_gap=0.5, max_gap=10) == 10  # nothing ends early
    assert next_poll_in(40.0, Normal(40.5, 0.1), chance=0.05, min_gap=5, max_gap=10) == 5


def test_a_1s_poller_sees_half_the_jobs_within_half_a_second() -> None:
    finish = LogNormal.from_median(60, 0.3)
    every_second = [float(t) for t in range(1, 400)]
    assert wait_share(every_second, finish, 0.5) == pytest.approx(0.5, abs=0.01)
    assert wait_share(every_second, finish, 0.9) == pytest.approx(0.9, abs=0.01)
    assert wait_share([], finish, 1.0) == 0.0


@pytest.mark.parametrize(
    ("median", "sigma"), [(8.0, 0.2), (8.0, 0.3), (60.0, 0.3), (180.0, 0.3), (60.0, 0.6)]
)
def test_the_calibrated_plan_keeps_the_wait_targets_with_fewer_polls(median: float, sigma: float) -> None:
    learned = LogNormal.from_median(median, sigma)
    rule = calibrate(learned, DEFAULT_POLL)
    finish = with_fallback(learned, median)
    times = plan(finish, rule, max_gap=DEFAULT_POLL.max_interval)
    assert wait_share(times, learned, 0.5) >= 0.5  # median wait at most a 1 s poller's
    assert wait_share(times, learned, 1.4) >= 0.9  # 90th percentile within +0.5 s of its
    every_second = [float(t) for t in range(0, 2000)]
    ratio = expected_polls(times, learned) / expected_polls(every_second, learned)
    assert ratio <= (0.5 if sigma <= 0.3 else 0.8)
    # no dense polls before the first few ends, where they would count against every job
    early = [0.0, *(t for t in times if finish.sf(t) > 0.97)]
    assert all(b - a >= LATE_P90 - 0.01 for a, b in itertools.pairwise(early))
    # a sparser rule (dense polls from later on) would not keep them
    sparser = replace(rule, dense=rule.dense * 1.3)
    times = plan(finish, sparser, max_gap=DEFAULT_POLL.max_interval)
    assert wait_share(times, finish, LATE_MEDIAN) < 0.5 or wait_share(times, finish, LATE_P90) < 0.9


@pytest.mark.parametrize("seed", range(4))
def test_the_scorer_shortcut_scores_as_walking_every_point_does(seed: int) -> None:
    """Calibration's scores come from runs found by bisection; the point-by-point walk is the
    definition they must agree with, for the estimates the planner makes and any thresholds."""
    rng = random.Random(seed)
    shortcuts = 0
    for _ in range(25):
        median, sigma = math.exp(rng.uniform(math.log(3), math.log(600))), rng.uniform(0.05, 1.4)
        learned = Predictive(
            math.log(median), sigma, rng.choice([1, 2, 4, 6, 30, 64]), rng.choice([0, 5, 60])
        )
        score = _Scorer(learned, DEFAULT_POLL.max_interval)
        shortcuts += score._unimodal  # pyright: ignore[reportPrivateUsage]
        # what it scores against is the planner's own estimate with its fallback
        finish = with_fallback(learned, learned.median)
        times = score._times  # pyright: ignore[reportPrivateUsage]
        sf = score._sf  # pyright: ignore[reportPrivateUsage]
        assert sf == pytest.approx([finish.sf(t) for t in times], rel=1e-12, abs=1e-15)
        unit = learned.hazard_at_median
        for _ in range(20):
            sparse = rng.uniform(0.01, 1.5) * unit
            dense = sparse * rng.uniform(0.5, 8.0)
            walked = score._pointwise(dense, sparse)  # pyright: ignore[reportPrivateUsage]
            assert score(dense, sparse) == pytest.approx(walked, rel=1e-9, abs=1e-12)
    assert shortcuts >= 15  # the shortcut is what calibration mostly runs


def test_the_prediction_from_few_jobs_has_heavier_tails_than_from_many() -> None:
    few, many = Predictive(math.log(8), 0.3, 4, 5), Predictive(math.log(8), 0.3, 60, 60)
    point = LogNormal.from_median(8, 0.3)
    assert few.median == many.median == pytest.approx(8)
    early, late = point.quantile(-2.5), point.quantile(2.5)
    assert 1 - few.sf(early) > 1 - many.sf(early) > (1 - point.sf(early)) * 0.95
    assert few.sf(late) > many.sf(late) > point.sf(late) * 0.95


def test_the_cold_schedule_is_a_steady_second_whatever_the_catalog_says() -> None:
    for typical in (7.5, 30.0, 120.0):
        assert cold_gap(0.0, 1.1, typical) == 1.1
        assert cold_gap(250.0, 1.1, typical) == 1.1
    assert cold_gap(3000.0, 1.1, 30.0) == pytest.approx(11.0)  # a job stuck for an hour thins out
    assert cold_gap(3000.0, 1.1, 1000.0) == 1.1  # unless the catalog expects that long


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
    stalled = progress_finish([(10.0, 0.2), (20.0, 0.4), (48.0, 0.95)])
    assert stalled is not None
    assert stalled.mean == pytest.approx(50, abs=0.5)


# --- what is learned --------------------------------------------------------------------------------


def test_the_duration_model_is_cold_until_five_jobs_then_predictive() -> None:
    model = DurationModel()
    rng = random.Random(1)
    for _ in range(MIN_WARM - 1):
        model.add(rng.lognormvariate(math.log(70), 0.3))
    assert model.distribution() is None
    model.add(70.0)
    young = model.distribution()
    assert young is not None
    assert young.median == pytest.approx(70, rel=0.3)
    for _ in range(200):
        model.add(rng.lognormvariate(math.log(70), 0.3))
    learned = model.distribution()
    assert learned is not None
    assert learned.median == pytest.approx(70, rel=0.1)
    assert 0.22 < learned.sigma < 0.38
    assert young.sigma > 0.2  # five jobs cannot pin the spread down: it is not taken as small
    samples = model.samples
    model.add(-1)
    model.add(math.inf)
    assert model.samples == samples


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_change_of_speed_is_seen_within_a_few_jobs(factor: float) -> None:
    model = DurationModel()
    rng = random.Random(4)
    for _ in range(30):
        model.add(rng.lognormvariate(math.log(40), 0.3))
    for _ in range(5):
        model.add(rng.lognormvariate(math.log(40 * factor), 0.3))
    learned = model.distribution()
    assert learned is not None
    assert model.current <= 6  # the old speed no longer counts for the median
    assert learned.median == pytest.approx(40 * factor, rel=0.25)
    assert learned.sigma < 0.5  # the spread is still pooled over both speeds


def test_steady_jobs_do_not_look_like_a_change_of_speed() -> None:
    model = DurationModel()
    rng = random.Random(5)
    for _ in range(60):
        model.add(rng.lognormvariate(math.log(40), 0.3))
    assert model.current >= 20


def test_jobs_are_grouped_by_the_arguments_that_change_their_time() -> None:
    assert kind_of("m", {"duration": 5, "prompt": "x", "seed": 3}) == "m|duration=5"
    assert kind_of("m", {"resolution": "720p", "duration": 10}) == "m|duration=10|resolution=720p"
    assert kind_of("m", {}) == "m"


def test_job_seconds_prefers_the_providers_inference_time() -> None:
    done = new_job(ULTRA_30S, status="completed", finished_at=1042.0)
    assert job_seconds(replace(done, inference_ms=38_500)) == 38.5
    assert job_seconds(replace(done, inference_ms=99_000)) == 42.0  # longer than it took here: not trusted
    assert job_seconds(done) == 42.0
    assert job_seconds(replace(done, status="failed")) is None
    assert job_seconds(replace(done, submitted_at=None)) is None


# --- the planner, on a fake clock ----------------------------------------------------------------------


@pytest.mark.parametrize("typical", [2.0, 30.0, 120.0])
def test_a_fresh_journal_polls_every_1_1_s_whatever_the_catalog_says(typical: float) -> None:
    spec = ULTRA_30S.model_copy(update={"typical_seconds": typical})
    planner = PollPlanner(DEFAULT_POLL, history=lambda slug: [])
    job = new_job(spec)
    for elapsed in (0.0, 1.1, 5.0, 30.0, 200.0):
        assert planner.next_delay(job, spec, 1000.0 + elapsed) == DEFAULT_POLL.cold_interval


def test_five_finished_jobs_make_the_schedule_warm() -> None:
    four = done_rows(ULTRA_30S, [8.0, 8.5, 7.5, 8.2])
    planner = PollPlanner(DEFAULT_POLL, history=lambda slug: four)
    job = new_job(ULTRA_30S)
    assert planner.learned(job) is None
    assert planner.next_delay(job, ULTRA_30S, 1000.0) == DEFAULT_POLL.cold_interval
    five = done_rows(ULTRA_30S, [8.0, 8.5, 7.5, 8.2, 7.9])
    planner = PollPlanner(DEFAULT_POLL, history=lambda slug: five)
    learned = planner.learned(job)
    assert learned is not None
    assert learned.median == pytest.approx(8.0, rel=0.05)  # the catalog's 30 s plays no part
    first = planner.next_delay(job, ULTRA_30S, 1000.0)
    assert 4.0 < first < 8.0  # nothing to see before the bulk of 8 s jobs, and no poll after it


def test_what_was_learned_is_kept_per_kind_and_falls_back_to_the_model() -> None:
    rows = done_rows(ULTRA_30S, [8.0] * 6, duration=5) + done_rows(ULTRA_30S, [16.0] * 6, duration=10)
    asked: list[str] = []

    def history(slug: str) -> list[Job]:
        asked.append(slug)
        return rows

    planner = PollPlanner(DEFAULT_POLL, history=history)
    short, long = new_job(ULTRA_30S, params={"duration": 5}), new_job(ULTRA_30S, params={"duration": 10})
    short_learned, long_learned = planner.learned(short), planner.learned(long)
    assert short_learned is not None
    assert long_learned is not None
    assert short_learned.median == pytest.approx(8.0, rel=0.01)
    assert long_learned.median == pytest.approx(16.0, rel=0.01)
    unseen = planner.learned(new_job(ULTRA_30S, params={"duration": 5, "resolution": "720p"}))
    assert unseen is not None
    assert 8.0 < unseen.median < 16.0  # no history of its own: the model's, over every kind
    assert asked == [ULTRA_30S.slug]  # the journal is read once per model


def test_the_end_is_learned_from_the_bracket_and_the_inference_time() -> None:
    planner = PollPlanner(DEFAULT_POLL)
    spec = VTRIX
    for n, (previous, seen, inference) in enumerate(
        [(10.0, 12.0, None), (20.0, 22.0, 21_500), (30.0, 34.0, 9_000)]
    ):
        job = new_job(spec, id=f"j{n}")
        planner.observe(job, spec, 1000.0 + previous)
        planner.observe(replace(job, video_url="https://v", inference_ms=inference), spec, 1000.0 + seen)
        planner.forget(job.id)
    model = planner.model(spec.slug)
    assert model.samples == 3
    # 11 (the bracket's middle), 21.5 (inside it), 32 (an inference before the bracket: it queued)
    logs = sorted(x for _, x in model._logs)  # pyright: ignore[reportPrivateUsage]
    assert [round(math.exp(x), 2) for x in logs] == [11.0, 21.5, 32.0]


def test_a_quick_job_is_learned_only_once_the_jobs_sent_before_it_have_ended() -> None:
    planner = PollPlanner(DEFAULT_POLL)
    model = planner.model(ULTRA_30S.slug)
    slow = new_job(ULTRA_30S, id="slow", submitted_at=1000.0)
    quick = new_job(ULTRA_30S, id="quick", submitted_at=1001.0)
    later = new_job(ULTRA_30S, id="later", submitted_at=1002.0)
    for job in (slow, quick, later):
        planner.observe(job, ULTRA_30S, 1005.0)
    planner.observe(replace(quick, video_url="https://v", inference_ms=20_000), ULTRA_30S, 1021.0)
    assert model.samples == 0  # "slow", sent before it, is still running
    planner.observe(replace(slow, video_url="https://v", inference_ms=70_000), ULTRA_30S, 1070.0)
    assert model.samples == 2
    planner.forget("later")  # its poller stopped without an end: it no longer holds anything back
    assert model.samples == 2


def test_a_burst_learns_from_its_first_ends_and_from_the_jobs_still_running() -> None:
    rows = done_rows(ULTRA_30S, [30.0, 31.0, 29.0, 30.5, 29.5])
    planner = PollPlanner(DEFAULT_POLL, history=lambda slug: rows)
    burst = [new_job(ULTRA_30S, id=f"b{n}", submitted_at=1000.0 + n / 100) for n in range(10)]
    before = planner.learned(burst[0], 1005.0)
    assert before is not None
    assert before.median == pytest.approx(30, rel=0.02)
    for job in burst:
        planner.observe(job, ULTRA_30S, 1008.0)
    for job in burst[4:]:  # six of ten end at about 10 s; four sent before them still run at 12 s
        planner.observe(replace(job, video_url="https://v", inference_ms=10_000), ULTRA_30S, 1010.5)
    for job in burst[:4]:
        planner.observe(job, ULTRA_30S, 1012.0)
    assert planner.model(kind_of(ULTRA_30S.slug, {})).samples == 5  # none is learned for good yet
    moved = planner.learned(burst[0], 1012.0)
    assert moved is not None
    assert 12 < moved.median < 22  # pulled down by the six ends, held up by the four still running
    only_ends = PollPlanner(DEFAULT_POLL, history=lambda slug: rows)
    for job in burst[4:]:
        only_ends.observe(job, ULTRA_30S, 1008.0)
        only_ends.observe(replace(job, video_url="https://v", inference_ms=10_000), ULTRA_30S, 1010.5)
    alone = only_ends.learned(burst[0], 1012.0)
    assert alone is not None
    assert alone.median < moved.median  # the running four count


def test_once_warm_the_planner_aims_at_the_end_that_progress_points_to() -> None:
    rows = done_rows(VTRIX, [60.0, 62.0, 58.0, 61.0, 59.0])
    planner = PollPlanner(DEFAULT_POLL, history=lambda slug: rows)
    job = new_job(VTRIX)  # the journal says 60 s; this one runs 100 s
    for elapsed in (10.0, 20.0, 30.0):
        planner.observe(replace(job, progress=round(elapsed / 100, 2)), VTRIX, 1000.0 + elapsed)
    assert planner.next_delay(job, VTRIX, 1030.0) == DEFAULT_POLL.max_interval
    planner.observe(replace(job, progress=0.9), VTRIX, 1090.0)
    assert 3 < planner.next_delay(job, VTRIX, 1090.0) < 10  # the next poll goes just before 100 s


# --- the sweep's cells, on the virtual clock (deterministic: seeded draws, no sleeping) -----------------

MEDIAN_NOISE = 0.03


@pytest.mark.parametrize(
    "cond",
    [
        Condition("cold", 8.0, 0.3, 0.25),  # the case: 8 s jobs, a catalog saying 32 s
        Condition("warm", 8.0, 0.2, 0.25),
        Condition("warm", 60.0, 0.2, 4.0),
        Condition("faster", 8.0, 0.3, 1.0),
        Condition("slower", 60.0, 0.3, 1.0),
    ],
    ids=lambda cond: cond.name,
)
def test_sweep_cells_meet_their_targets_against_a_1s_poller(cond: Condition) -> None:
    ours, fixed = simulate(cond, seed=3, replicas=20)
    median, p90, polls = targets(cond)
    figures = (ours.median, ours.p90, ours.per_job, fixed.median, fixed.p90, fixed.per_job)
    # 20 replicas (200-240 jobs) pin either median to about 0.02 s, and the two are drawn apart;
    # bench/polling.py's 300 replicas a cell are the measurement. Polls and the tail are held exactly.
    assert ours.median <= fixed.median + median + MEDIAN_NOISE, figures
    assert ours.p90 <= fixed.p90 + p90, figures
    assert ours.per_job <= polls * fixed.per_job, figures


def test_the_virtual_1s_poller_is_a_1s_poller() -> None:
    jobs = [(0.0, 4.5), (0.3, 10.0)]
    waits, polls, _ = run_virtual(ULTRA_30S, jobs, fixed=1.0)
    assert polls == [6, 11]  # at once, then a second after each 10 ms answer
    assert waits == pytest.approx([0.55, 0.1], abs=1e-6)


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
    # Seconds scaled down: a cold schedule 0.05 s apart; the job runs 0.3 s.
    poll = PollPolicy(adaptive=True, interval=0.05, min_interval=0.01, max_interval=0.1, cold_interval=0.05)
    settings = make_settings(tmp_path, poll=poll)
    emulator.duration_sampler = lambda job: 0.3
    slug = ULTRA_30S.slug
    server = build_server(settings, transport=emulator.transport())
    async with Client(server) as client:
        with anyio.fail_after(10):
            result = await client.call_tool(f"{slug}_generate_video", minimal_arguments(slug))
        assert structured(result)["status"] == "completed"
        polls = [call for call in emulator.calls if call.route == "ws.result"]
        gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
        assert 2 <= len(polls) <= 7
        assert all(gap >= 0.05 for gap in gaps)  # planned gaps, not the interval-0 spin of the tests
        (submit,) = [call for call in emulator.calls if call.route == "ws.submit"]
        assert polls[0].at - submit.at >= 0.05  # the submit's answer was the first status


JOB_SECONDS = 8.0  # what every emulated job takes (the 8 s); the catalog says 30 s


async def _generate_together(
    home: Path, base_url: str, emulator: Emulator, prompts: list[str]
) -> dict[str, float]:
    """One server over stdio; ``prompts`` generated at once; when each result reached the client."""
    params = stdio_server(home, base_url, WAN_MCP_LOG_LEVEL="WARNING")
    env = {
        k: v for k, v in (params.env or {}).items() if k != "WAN_MCP_POLL_INTERVAL"
    }  # the default schedule
    arrived: dict[str, float] = {}
    slug = ULTRA_30S.slug
    async with stdio_session(params.model_copy(update={"env": env})) as (client, _):

        async def one(prompt: str) -> None:
            arguments = minimal_arguments(slug, prompt=prompt, wait_seconds=40)
            result = await client.call_tool(f"{slug}_generate_video", arguments)
            arrived[prompt] = time.monotonic()
            assert structured(result)["status"] == "completed", structured(result)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for prompt in prompts:
                    group.start_soon(one, prompt)
    return arrived


@pytest.mark.anyio
async def test_over_stdio_jobs_far_quicker_than_the_catalog_arrive_promptly_then_cost_few_polls(
    tmp_path: Path, emulator: Emulator
) -> None:
    from server.sandbox import serve_emulator

    emulator.duration_sampler = lambda job: JOB_SECONDS
    emulator.render_scale = 0.05
    emulator.fps = 2
    home = tmp_path / "home"
    async with serve_emulator(emulator) as base_url:
        # A fresh journal: nothing known of the model, so nothing waits for the catalog's 30 s.
        cold = [f"cold job {n}, a slow pan" for n in range(MIN_WARM)]
        arrived = await _generate_together(home, base_url, emulator, cold)
        jobs = {job.body["prompt"]: job for job in emulator.jobs.values()}
        late = [arrived[p] - (jobs[p].started + JOB_SECONDS) for p in cold]
        assert all(0 <= x <= 2.5 for x in late), late  # within about a second (1.1 s polls), loaded box
        # A new server on the same journal: what five jobs taught survives the restart.
        warm = [f"warm job {n}, a slow pan" for n in range(3)]
        await _generate_together(home, base_url, emulator, warm)
    jobs = {job.body["prompt"]: job for job in emulator.jobs.values()}
    one_second = math.ceil(JOB_SECONDS) + 1  # a 1 s poller: at once, then every second until done
    polls = [jobs[p].polls for p in warm]
    assert all(n < one_second / 2 for n in polls), (polls, one_second)
    assert all(jobs[p].polls >= 5 for p in cold)  # cold: about every second (the warm gain is real)
