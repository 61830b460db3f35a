"""When to look at a job again: a model of when it will finish, and the chance it has finished.

A job still running at the last poll is polled next when the chance that it has finished since
then reaches a set value, never sooner than ``PollPolicy.min_interval`` and never later than
``max_interval``. That value is what ``peak_interval`` seconds are worth where the job is most
likely to end (at the median of the estimate: there, polls are ``peak_interval`` apart); where an
end is less likely, polls thin out in proportion. A job of any length is then polled about as
densely around its likely end, so the wait between its end and the poll that sees it stays about
the same whether it takes 20 s or 2 minutes.

What "when it will finish" is made of, best first:

1. The provider's ``progress`` (Vtrix reports a 0-1 fraction while a job runs): the line through
   the progress readings, extrapolated to 1, with a spread that shrinks as the end nears.
2. How long this model's jobs took before (a log-normal per model, learned from completed jobs:
   WaveSpeed's ``timings.inference`` when there is one, else the time we saw the job take), with the
   catalog's ``typical_seconds`` and a spread (sigma) of 0.3 as the prior.

Either way a small share of a wide log-normal is mixed in, so a job that outlives every estimate is
polled less and less often instead of every ``min_interval`` forever. Everything here is pure
except ``PollPlanner``, which keeps the per-model duration models and per-job progress readings.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.catalog import ModelSpec
from server.jobs.store import Job
from server.settings import PollPolicy

PRIOR_SIGMA = 0.3
# How many completed jobs the catalog's typical time is worth against learned ones.
PRIOR_WEIGHT = 8.0
# Completed jobs remembered per model (the newest win: providers speed up and slow down).
MAX_SAMPLES = 64
SIGMA_RANGE = (0.05, 1.5)
# The share and spread of the wide log-normal mixed into every estimate.
FALLBACK_WEIGHT = 0.02
FALLBACK_SIGMA = 1.0
# Progress: readings kept per job, the resolution assumed (Vtrix reports two decimals), a reading
# from which on progress bars often stall (it says "nearly done", not when), and how far a
# straight-line extrapolation is trusted (its spread as a share of the time it reaches ahead).
MAX_READINGS = 8
PROGRESS_STEP = 0.01
PROGRESS_STALLS = 0.95
PROGRESS_TRUST = 0.1
PROGRESS_WEIGHT = 0.95
_SQRT2 = math.sqrt(2.0)


class Finish(Protocol):
    """A distribution of a job's finish time, in seconds since it was submitted."""

    def sf(self, t: float) -> float:
        """P(the job is still running at ``t``)."""
        ...


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / _SQRT2)


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Finish time with ``log T ~ N(mu, sigma²)``."""

    mu: float
    sigma: float

    @classmethod
    def from_median(cls, median: float, sigma: float = PRIOR_SIGMA) -> LogNormal:
        return cls(math.log(median), sigma)

    @property
    def median(self) -> float:
        return math.exp(self.mu)

    def sf(self, t: float) -> float:
        if t <= 0:
            return 1.0
        return _upper_tail((math.log(t) - self.mu) / self.sigma)


@dataclass(frozen=True, slots=True)
class Normal:
    """Finish time around ``mean`` with spread ``sd`` (what a progress extrapolation gives)."""

    mean: float
    sd: float

    def sf(self, t: float) -> float:
        return _upper_tail((t - self.mean) / self.sd)


@dataclass(frozen=True, slots=True)
class Mixture:
    """A weighted mix of finish-time distributions (weights sum to 1)."""

    parts: tuple[tuple[float, Finish], ...]

    def sf(self, t: float) -> float:
        return sum(weight * part.sf(t) for weight, part in self.parts)


def with_fallback(finish: Finish, median: float) -> Mixture:
    """``finish`` with a little of a wide log-normal around ``median`` mixed in."""
    wide = LogNormal.from_median(median, FALLBACK_SIGMA)
    return Mixture(((1 - FALLBACK_WEIGHT, finish), (FALLBACK_WEIGHT, wide)))


def median(finish: Finish) -> float:
    """The time by which the job has finished with probability 1/2."""
    high = 1.0
    while finish.sf(high) > 0.5 and high < 1e7:
        high *= 2
    low = 0.0
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        if finish.sf(middle) > 0.5:
            low = middle
        else:
            high = middle
    return high


def peak_chance(finish: Finish, peak_gap: float) -> float:
    """The chance of finishing within ``peak_gap`` seconds of the median, for a job still running then.

    It is ``peak_gap`` times the hazard rate at the median, kept within 0.0001-0.5 (at 0.5, the next
    poll goes where the job is as likely done as not).
    """
    middle = median(finish)
    step = max(0.01 * middle, 0.01)
    running = finish.sf(middle)
    hazard = (finish.sf(max(middle - step, 0.0)) - finish.sf(middle + step)) / (2 * step) / running
    return min(max(peak_gap * hazard, 1e-4), 0.5)


def next_poll_in(elapsed: float, finish: Finish, *, chance: float, min_gap: float, max_gap: float) -> float:
    """Seconds from ``elapsed`` until a job still running then has finished with probability ``chance``.

    Solves ``sf(elapsed + d) = sf(elapsed) * (1 - chance)`` for ``d`` in ``[min_gap, max_gap]``.
    """
    max_gap = max(max_gap, min_gap)
    running = finish.sf(elapsed)
    if running <= 0.0:
        return max_gap
    target = running * (1.0 - chance)
    if finish.sf(elapsed + min_gap) <= target:
        return min_gap
    if finish.sf(elapsed + max_gap) > target:
        return max_gap
    low, high = min_gap, max_gap
    while high - low > 0.01:
        middle = (low + high) / 2
        if finish.sf(elapsed + middle) <= target:
            high = middle
        else:
            low = middle
    return high


def progress_finish(readings: Sequence[tuple[float, float]], started: float = 0.0) -> Normal | None:
    """Where progress readings ``(elapsed, fraction)`` reach 1, with a spread; None if they can't say.

    One reading is taken as a line from ``(started, 0)``; several are fitted by least squares.
    """
    points = [(t, p) for t, p in readings if 0.0 < p < PROGRESS_STALLS]
    if not points:
        return None
    if len(points) == 1:
        (t, p) = points[0]
        if t <= started:
            return None
        slope = p / (t - started)
        intercept = -slope * started
    else:
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_p = sum(p for _, p in points) / n
        spread = sum((t - mean_t) ** 2 for t, _ in points)
        if spread <= 0:
            return None
        slope = sum((t - mean_t) * (p - mean_p) for t, p in points) / spread
        intercept = mean_p - slope * mean_t
    if slope <= 0:
        return None
    end = (1.0 - intercept) / slope
    last = points[-1][0]
    reach = max(end - last, 0.0)
    # Rounding of the fraction, and how far the straight line is stretched.
    sd = math.hypot(PROGRESS_STEP / 2 / slope, PROGRESS_TRUST * reach)
    return Normal(end, max(sd, 0.05))


class DurationModel:
    """How long one model's jobs take, as a log-normal learned from completed jobs.

    The estimate is the prior (the catalog's typical time, sigma 0.3) counted as ``PRIOR_WEIGHT``
    jobs, updated with the last ``MAX_SAMPLES`` observed durations.
    """

    def __init__(self, typical_seconds: float, sigma: float = PRIOR_SIGMA) -> None:
        self._prior_mu = math.log(typical_seconds)
        self._prior_sigma = sigma
        self._logs: deque[float] = deque(maxlen=MAX_SAMPLES)
        self._cached: LogNormal | None = None

    def add(self, seconds: float) -> None:
        if seconds > 0 and math.isfinite(seconds):
            self._logs.append(math.log(seconds))
            self._cached = None

    @property
    def samples(self) -> int:
        return len(self._logs)

    def distribution(self) -> LogNormal:
        if self._cached is None:
            n = len(self._logs)
            w = PRIOR_WEIGHT
            if n == 0:
                self._cached = LogNormal(self._prior_mu, self._prior_sigma)
            else:
                mean = sum(self._logs) / n
                squares = sum((x - mean) ** 2 for x in self._logs)
                mu = (w * self._prior_mu + n * mean) / (w + n)
                variance = (w * self._prior_sigma**2 + squares) / (w + n)
                sigma = min(max(math.sqrt(variance), SIGMA_RANGE[0]), SIGMA_RANGE[1])
                self._cached = LogNormal(mu, sigma)
        return self._cached


def job_seconds(job: Job) -> float | None:
    """How long a completed job took at the provider, from its journal row (None if unknown).

    WaveSpeed's ``timings.inference`` when reported; otherwise submission to ``finished_at``
    (which also holds the wait for the last poll and the download, so it errs long).
    """
    if job.status != "completed":
        return None
    if job.inference_ms:
        return job.inference_ms / 1000
    if job.finished_at is not None and job.submitted_at is not None:
        seconds = job.finished_at - job.submitted_at
        return seconds if seconds > 0 else None
    return None


@dataclass
class _Track:
    """What the planner has seen of one live job."""

    model: str
    origin: float
    readings: list[tuple[float, float]] = field(default_factory=list[tuple[float, float]])
    started: float = 0.0
    last_poll: float | None = None
    done: bool = False


History = Callable[[str], Iterable[float]]


class PollPlanner:
    """Decides each live job's next poll; learns each model's durations as jobs complete.

    ``history(slug)`` gives durations of the model's past jobs (from the journal); it is asked
    once per model, the first time a job of that model is planned.

    A completed job's duration is learned once every job of its model submitted before it has
    ended too (or once ``MAX_SAMPLES`` are waiting): of a burst of jobs sent together the quick
    ones end first, and learning from them alone would teach that jobs are quicker than they are.
    """

    def __init__(self, policy: PollPolicy, history: History | None = None) -> None:
        self._policy = policy
        self._history = history
        self._models: dict[str, DurationModel] = {}
        self._tracks: dict[str, _Track] = {}
        self._unlearned: dict[str, list[tuple[float, float]]] = {}  # slug -> (submitted, seconds)

    def model(self, slug: str, spec: ModelSpec | None) -> DurationModel:
        found = self._models.get(slug)
        if found is None:
            found = self._models[slug] = DurationModel(spec.typical_seconds if spec else 60.0)
            if self._history is not None:
                for seconds in self._history(slug):
                    found.add(seconds)
        return found

    def observe(self, job: Job, spec: ModelSpec | None, now: float) -> None:
        """Record a status just read: a progress reading, or the job's end (its duration is learned)."""
        track = self._tracks.get(job.id)
        if track is None:
            track = self._tracks[job.id] = _Track(job.model, _origin(job))
        elapsed = now - track.origin
        previous = track.last_poll
        track.last_poll = elapsed
        if job.video_url is not None or job.is_final:
            if job.video_url is not None and not track.done:
                track.done = True
                if job.inference_ms:
                    seconds = job.inference_ms / 1000
                else:  # it ended between the last two polls
                    seconds = elapsed if previous is None else (previous + elapsed) / 2
                self._unlearned.setdefault(job.model, []).append((track.origin, seconds))
                self._learn(job.model, spec)
            return
        progress = job.progress
        if job.status == "queued" or progress is None or progress <= 0.0:
            track.started = elapsed  # has not visibly started yet
        elif not track.readings or progress > track.readings[-1][1]:
            track.readings.append((elapsed, progress))
            del track.readings[:-MAX_READINGS]

    def forget(self, job_id: str) -> None:
        """The job's poller has stopped: drop what was kept for it."""
        track = self._tracks.pop(job_id, None)
        if track is not None:
            self._learn(track.model, None)

    def _learn(self, slug: str, spec: ModelSpec | None) -> None:
        waiting = self._unlearned.get(slug)
        if not waiting:
            return
        running = [t.origin for t in self._tracks.values() if t.model == slug and not t.done]
        cutoff = min(running, default=math.inf)
        waiting.sort()
        model = self.model(slug, spec)
        while waiting and (waiting[0][0] <= cutoff or len(waiting) > MAX_SAMPLES):
            model.add(waiting.pop(0)[1])

    def finish(self, job: Job, spec: ModelSpec | None) -> Finish:
        """The current estimate of when ``job`` finishes (seconds since it was submitted)."""
        learned = self.model(job.model, spec).distribution()
        track = self._tracks.get(job.id)
        if track is not None and track.readings:
            extrapolated = progress_finish(track.readings, track.started)
            if extrapolated is not None:
                blended = Mixture(((PROGRESS_WEIGHT, extrapolated), (1 - PROGRESS_WEIGHT, learned)))
                return with_fallback(blended, learned.median)
        return with_fallback(learned, learned.median)

    def next_delay(self, job: Job, spec: ModelSpec | None, now: float) -> float:
        """Seconds to wait before polling ``job`` again."""
        policy = self._policy
        elapsed = max(now - _origin(job), 0.0)
        finish = self.finish(job, spec)
        return next_poll_in(
            elapsed,
            finish,
            chance=peak_chance(finish, policy.peak_interval),
            min_gap=policy.min_interval,
            max_gap=policy.max_interval,
        )


def _origin(job: Job) -> float:
    return job.submitted_at if job.submitted_at is not None else job.created_at
