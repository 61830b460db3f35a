"""When to look at a job again, from what its kind of job has been seen to take, not from the catalog.

The catalog's ``typical_seconds`` is a guess that real jobs miss by factors (queues, resolution,
duration, provider load), so no guarantee here rests on it:

- **Cold** (fewer than ``MIN_WARM`` finished jobs of this kind): a poll every ``cold_interval``
  (1 s), as a fixed 1 s poller would, widening only once a job has run ``COLD_HORIZON`` times
  longer than the catalog says (so a stuck job is not polled every second for hours).
- **Warm**: the next job's time as learned from the finished jobs (``DurationModel``), predictive
  (``Predictive``: a log-t, whose spread covers what five jobs cannot pin down about the median
  and sigma). The rule (``Spacing``) is the shape the best plan for a known distribution has:
  one jump over the stretch where ends are rare (the jobs that end there are the slow-to-be-seen
  tenth a 90th percentile allows), ``LATE_P90`` apart while ends are coming, and ``LATE_MEDIAN``
  apart where the chance of an end is highest, which is also where a poll is cheapest because
  most jobs it would count against have ended. Its two thresholds are calibrated per estimate
  (``calibrate``): the fewest expected polls whose waits from a job's end to the poll that sees
  it stay within ``LATE_MEDIAN`` (median) and ``LATE_P90`` (90th percentile) if jobs end as
  learned, which a 1 s poller's 0.5 s and 0.9 s (+0.5 s) bound from above.

Times count from a job's ``submitted_at``: when the provider took it, by its ``created_at``
(``server.jobs.clock``). What is learned, per model and per the arguments that change the time
(``TIME_PARAMS``; per model alone until a combination has history of its own):

1. The end of each job, bracketed by the last poll that saw it running and the first that saw it
   done, narrowed by WaveSpeed's ``timings.inference`` when that falls inside the bracket.
2. A speed change: when the newest finished jobs sit far from the older ones (``SHIFT_Z`` standard
   errors), the older ones stop counting for the median; the spread (log-normal sigma), which a
   change of speed does not alter, keeps being pooled over both.
3. The jobs in flight: those that ended but wait to be learned, and those still running (each
   known to take longer than its last poll), move the median at once (``PollPlanner._in_flight``).
4. While a job runs, Vtrix's ``progress`` extrapolated to 1 (warm only: a progress bar is not
   trusted before the schedule knows what the model's jobs take).

The journal's completed rows are the memory: ``PollPlanner`` asks for them once per model, so what
was learned survives a restart. Everything here is pure except ``PollPlanner``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from statistics import NormalDist
from typing import Any, Protocol

from server.catalog import ModelSpec
from server.jobs.store import Job
from server.settings import PollPolicy

# Finished jobs of a kind before its learned distribution replaces the cold schedule.
MIN_WARM = 5
# After a detected change of speed: jobs at the new speed before the schedule is warm again.
MIN_SEGMENT = 3
# The spread assumed before any is seen (what video jobs of one kind typically show), and how many
# jobs' worth it counts against the data: two, so five jobs that happen to scatter do not make the
# plan twice as wide (measured at sigma 0.6, 8 s jobs, all else equal: x0.78 -> x0.75 of a 1 s
# poller's polls).
PRIOR_SIGMA = 0.3
PRIOR_SIGMA_WEIGHT = 2.0
SIGMA_RANGE = (0.05, 1.5)
# Finished jobs remembered per kind (the newest win).
MAX_SAMPLES = 64
# A change of speed: the newest k (SHIFT_MIN..SHIFT_MAX) jobs' mean log time this many standard
# errors from the older jobs' mean.
SHIFT_Z = 3.0
SHIFT_MIN, SHIFT_MAX = 3, 6
# Cold: polls ``cold_interval`` apart until the job has run this many times the catalog's time
# (and at least COLD_FLOOR seconds); after that the gap grows in proportion to the time run.
COLD_HORIZON = 4.0
COLD_FLOOR = 300.0
# The arguments that change how long a job takes.
TIME_PARAMS = ("duration", "resolution", "size", "num_inference_steps")
# The key of a whole model's record, every kind together.
POOLED = "|*"
# Progress: readings kept per job, the resolution assumed (Vtrix reports two decimals), a reading
# from which on progress bars often stall (it says "nearly done", not when), and how far a
# straight-line extrapolation is trusted (its spread as a share of the time it reaches ahead).
MAX_READINGS = 8
PROGRESS_STEP = 0.01
PROGRESS_STALLS = 0.95
PROGRESS_TRUST = 0.1
PROGRESS_WEIGHT = 0.95
# Warm: the wait from a job's end to the poll that sees it, median and 90th percentile, that the
# plan must keep if jobs end as learned (a 1 s poller's are 0.5 s and 0.9 s); they are also the
# dense and sparse gaps. Measured (bench/polling.py), realised medians come out 0.03-0.06 s under
# LATE_MEDIAN for 8 s jobs and within 0.02 s of it for 60 s jobs, so it sits just under 0.5 s. The
# sparse threshold's grid and the dense threshold's ceiling, in units of the hazard at the median.
LATE_MEDIAN = 0.48
LATE_P90 = 1.32
SPARSE_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2)
DENSE_MAX = 8.0
# Calibration scores rules on this many times, log-spaced over this many sigmas either side.
SCORE_POINTS = 240
SCORE_SPAN = 3.7
# Learned distributions this close share one calibration (log median, sigma).
CALIBRATION_GRID = (0.03, 0.015)
# The share and spread of a wide log-normal mixed into every warm estimate, so a job that outlives
# every estimate is polled less and less often instead of at the tightest spacing forever.
FALLBACK_WEIGHT = 0.02
FALLBACK_SIGMA = 1.0
# Jobs in flight move the learned median (``PollPlanner._in_flight``): EM rounds at most, and how
# often (seconds) it is worked out again while no job ends.
IN_FLIGHT_ROUNDS = 12
IN_FLIGHT_REFRESH = 1.0
# Where sigma's posterior is sampled for the predictive mix.
SIGMA_PROBS = (0.1, 0.3, 0.5, 0.7, 0.9)
_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)
_PHI0 = 1 / math.sqrt(2 * math.pi)


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

    @property
    def hazard_at_median(self) -> float:
        """The rate at which jobs still running at the median end there: ``2 phi(0) / (sigma m)``."""
        return 2 * _PHI0 / (self.sigma * self.median)

    def quantile(self, z: float) -> float:
        """The time ``z`` standard deviations (of log time) from the median."""
        return math.exp(self.mu + z * self.sigma)

    def sf(self, t: float) -> float:
        if t <= 0:
            return 1.0
        return _upper_tail((math.log(t) - self.mu) / self.sigma)


# Kept: every estimate rebuilt while jobs are in flight asks again, and freedoms are few.
@lru_cache(maxsize=256)
def _sigma_quantiles(freedom: float) -> tuple[float, ...]:
    """Multipliers of a sigma estimated with ``freedom`` degrees of freedom, at ``SIGMA_PROBS`` of its
    posterior (``freedom / chi²``; Wilson-Hilferty's chi² quantiles)."""
    found: list[float] = []
    for p in SIGMA_PROBS:
        z = _NORMAL.inv_cdf(1 - p)
        cube = 1 - 2 / (9 * freedom) + z * math.sqrt(2 / (9 * freedom))
        found.append(math.sqrt(1 / max(cube, 0.05) ** 3))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Predictive:
    """The next job's time when the log median and sigma are estimates: the median from ``n`` jobs,
    sigma ``scale`` with ``freedom`` degrees of freedom. A log-t, as an even mix of log-normals at
    quantiles of sigma's posterior, each widened by ``sqrt(1 + 1/n)`` for the median's error."""

    mu: float
    scale: float
    freedom: float
    n: int
    parts: tuple[LogNormal, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        widen = self.sigma
        quantiles = _sigma_quantiles(max(self.freedom, 1.0))
        object.__setattr__(self, "parts", tuple(LogNormal(self.mu, widen * q) for q in quantiles))

    @property
    def median(self) -> float:
        return math.exp(self.mu)

    @property
    def sigma(self) -> float:
        """The spread of a typical part: the estimate, widened for the median's error (``n`` 0: the
        scale is that already)."""
        return self.scale * math.sqrt(1 + 1 / self.n) if self.n > 0 else self.scale

    @property
    def hazard_at_median(self) -> float:
        return 2 * _PHI0 / (self.sigma * self.median)

    def quantile(self, z: float) -> float:
        """``z`` standard deviations from the median, in the widest part."""
        return self.parts[-1].quantile(z)

    def sf(self, t: float) -> float:
        return sum(part.sf(t) for part in self.parts) / len(self.parts)


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


def hazard(finish: Finish, t: float) -> float:
    """The rate at which jobs still running at ``t`` end there (per second)."""
    return _hazard_from(finish.sf, t, finish.sf(t))


@dataclass(frozen=True, slots=True)
class Spacing:
    """A warm rule: polls ``dense_gap`` apart where the hazard is at least ``dense``, ``sparse_gap``
    apart where it is at least ``sparse``, and one jump over a stretch where it is lower.

    The few jobs that end in a jump are the slow-to-be-seen tenth the 90th percentile allows; the
    dense stretch, where a poll is cheap because most jobs it would be counted against have ended
    or are ending, holds the median."""

    dense: float
    sparse: float
    dense_gap: float
    sparse_gap: float

    @classmethod
    def of(cls, dense: float, sparse: float) -> Spacing:
        return cls(dense, sparse, LATE_MEDIAN, LATE_P90)


def next_gap(elapsed: float, finish: Finish, rule: Spacing, *, max_gap: float) -> float:
    """Seconds from ``elapsed`` to the next poll of a job still running then, by ``rule``."""
    level = hazard(finish, elapsed)
    if level >= rule.dense:
        return min(rule.dense_gap, max_gap)
    if level >= rule.sparse:
        gap = min(rule.sparse_gap, max_gap)
        if hazard(finish, elapsed + gap) < rule.dense:
            return gap
        # The dense stretch starts within this gap: the poll goes where it starts.
        start = _where_hazard_reaches(finish, rule.dense, elapsed, elapsed + gap)
        return max(start - elapsed, rule.dense_gap)
    # Jump to where the hazard reaches ``sparse``: scanned, then bisected.
    reach = elapsed + max(max_gap, rule.sparse_gap)
    before, ahead = elapsed, elapsed
    while ahead < reach:
        ahead = min(ahead + rule.sparse_gap, reach)
        if hazard(finish, ahead) >= rule.sparse:
            start = _where_hazard_reaches(finish, rule.sparse, before, ahead)
            return max(start - elapsed, rule.dense_gap)
        before = ahead
    # The far tail, where the hazard falls: gaps grow as the chance of an end per gap stays put.
    chance = min(rule.sparse * rule.sparse_gap, 0.5)
    return next_poll_in(elapsed, finish, chance=chance, min_gap=rule.sparse_gap, max_gap=max_gap)


def _where_hazard_reaches(finish: Finish, level: float, before: float, ahead: float) -> float:
    """Where the hazard, below ``level`` at ``before`` and not at ``ahead``, reaches it (to 20 ms)."""
    while ahead - before > 0.02:
        middle = (before + ahead) / 2
        if hazard(finish, middle) >= level:
            ahead = middle
        else:
            before = middle
    return ahead


def plan(finish: Finish, rule: Spacing, *, max_gap: float, limit: int = 4000) -> list[float]:
    """The poll times ``rule`` gives a job that reports nothing until it ends (from 0 s)."""
    times: list[float] = []
    elapsed = 0.0
    while len(times) < limit and finish.sf(elapsed) > 1e-3:
        elapsed += next_gap(elapsed, finish, rule, max_gap=max_gap)
        times.append(elapsed)
    return times


def expected_polls(times: Sequence[float], finish: Finish) -> float:
    """Polls a job ending as ``finish`` says is sent, polled at ``times`` (each until it is seen done)."""
    total, previous = 0.0, 0.0
    for t in times:
        total += finish.sf(previous)
        previous = t
    return total


def wait_share(times: Sequence[float], finish: Finish, wait: float) -> float:
    """The share of jobs seen within ``wait`` seconds of their end, polled at ``times`` (of those
    that end by the last of them)."""
    if not times:
        return 0.0
    total, previous = 0.0, 0.0
    for t in times:
        total += finish.sf(max(previous, t - wait)) - finish.sf(t)
        previous = t
    return total / (1.0 - finish.sf(times[-1]))


def calibrate(learned: LogNormal | Predictive, policy: PollPolicy) -> Spacing:
    """The rule with the fewest expected polls that keeps the median and 90th percentile wait within
    ``LATE_MEDIAN`` and ``LATE_P90`` if jobs end as ``learned`` (with its fallback) says.

    Thresholds are searched in units of the hazard at the median: for each ``sparse`` on a grid (and
    halfway to the neighbours of the grid's best), the highest ``dense`` that keeps both, and of
    those the cheapest (polling ``dense_gap`` apart throughout if none keeps them). Rules are scored
    on a fine grid of times, taking the ends inside a gap as spread evenly over it, so a score costs
    no plan.
    """
    score = _Scorer(learned, policy.max_interval)
    unit = learned.hazard_at_median

    def keeps(dense: float, sparse: float) -> bool:
        median, p90, _ = score(dense * unit, sparse * unit)
        return median >= 0.5 and p90 >= 0.9

    def cheapest(sparse: float) -> tuple[float, Spacing] | None:
        """The highest ``dense`` that keeps both, for this ``sparse`` (None if none does)."""
        if not keeps(sparse, sparse):
            return None
        low, high = sparse, DENSE_MAX
        if not keeps(high, sparse):
            while high / low > 1.02:
                middle = math.sqrt(low * high)
                if keeps(middle, sparse):
                    low = middle
                else:
                    high = middle
            high = low
        return score(high * unit, sparse * unit)[2], Spacing.of(high * unit, sparse * unit)

    found = {sparse: cheapest(sparse) for sparse in SPARSE_GRID}
    costs = {sparse: got[0] for sparse, got in found.items() if got is not None}
    if not costs:
        return Spacing.of(0.0, 0.0)
    # The grid is coarse: halfway (geometrically) to each neighbour of its cheapest.
    at = SPARSE_GRID.index(min(costs, key=costs.__getitem__))
    for near in SPARSE_GRID[max(at - 1, 0) : at] + SPARSE_GRID[at + 1 : at + 2]:
        sparse = math.sqrt(near * SPARSE_GRID[at])
        found[sparse] = cheapest(sparse)
    best = min((got for got in found.values() if got is not None), key=lambda got: got[0])
    return best[1]


class _Scorer:
    """Scores a rule's (median share, 90th percentile share, expected polls) on a grid of times.

    Calibration scores about 80 rules per estimate, so a score is a few prefix-sum differences:
    a log-normal mix's hazard rises to one peak and falls, so the times at or above a level are
    one run, found by bisection (a hazard that is not seen to do so is scored point by point)."""

    def __init__(self, learned: LogNormal | Predictive, max_gap: float) -> None:
        low, high = learned.quantile(-SCORE_SPAN), learned.quantile(SCORE_SPAN)
        self._max_gap = max(max_gap, LATE_P90)
        times = [0.0] + [low * (high / low) ** (k / (SCORE_POINTS - 1)) for k in range(SCORE_POINTS)]
        sf = _fallback_sf(learned)
        self._times = times
        self._sf = [sf(t) for t in times]
        self._sf_median = [sf(t - LATE_MEDIAN) for t in times]
        self._sf_p90 = [sf(t - LATE_P90) for t in times]
        self._hazard = [_hazard_from(sf, t, running) for t, running in zip(times, self._sf, strict=True)]
        self._covered = self._sf[0] - self._sf[-1]
        last = len(times) - 1
        ended, cost = [0.0], [0.0]
        for k in range(last):
            ended.append(ended[-1] + self._sf[k] - self._sf[k + 1])
            cost.append(cost[-1] + (self._sf[k] + self._sf[k + 1]) / 2 * (times[k + 1] - times[k]))
        self._ended, self._cost = ended, cost
        levels = self._hazard[:last]
        self._peak = max(range(last), key=levels.__getitem__)
        rising, falling = levels[: self._peak + 1], levels[self._peak :]
        self._rising = rising
        self._falling = [-level for level in falling]
        self._unimodal = all(a <= b for a, b in pairwise(rising)) and all(
            a <= b for a, b in pairwise(self._falling)
        )

    def __call__(self, dense: float, sparse: float) -> tuple[float, float, float]:
        if not self._unimodal:
            return self._pointwise(dense, sparse)
        last = len(self._times) - 1
        ended, cost = self._ended, self._cost
        median = p90 = total = 0.0
        s_from, s_to = self._run(sparse)
        d_from, d_to = self._run(max(dense, sparse))
        if s_from >= s_to:
            median, p90, total = self._jump(0, last)
            return median / self._covered, p90 / self._covered, total
        if s_from > 0:
            median, p90, total = self._jump(0, s_from)
        if s_to < last:
            got = self._jump(s_to, last)
            median, p90, total = median + got[0], p90 + got[1], total + got[2]
        sparse_ended = ended[s_to] - ended[s_from] - (ended[d_to] - ended[d_from])
        sparse_cost = cost[s_to] - cost[s_from] - (cost[d_to] - cost[d_from])
        dense_ended = ended[d_to] - ended[d_from]
        median += dense_ended + sparse_ended * LATE_MEDIAN / LATE_P90
        p90 += dense_ended + sparse_ended
        total += (cost[d_to] - cost[d_from]) / LATE_MEDIAN + sparse_cost / LATE_P90
        covered = self._covered
        return median / covered, p90 / covered, total

    def _run(self, level: float) -> tuple[int, int]:
        """The segments (``from``, ``to``) whose hazard is at least ``level``: one run, or empty."""
        if self._rising[-1] < level:
            return self._peak, self._peak
        start = bisect_left(self._rising, level)
        return start, self._peak + bisect_right(self._falling, -level)

    def _jump(self, k: int, j: int) -> tuple[float, float, float]:
        """(median, p90, cost) sums of one jump over segments ``k`` to ``j`` (unnormalised)."""
        sf, times = self._sf, self._times
        start, stop = times[k], times[j]
        if stop - start <= self._max_gap:
            median = (sf[k] if stop - start <= LATE_MEDIAN else self._sf_median[j]) - sf[j]
            p90 = (sf[k] if stop - start <= LATE_P90 else self._sf_p90[j]) - sf[j]
            return median, p90, sf[k]
        gap = self._max_gap
        ended = self._ended[j] - self._ended[k]
        return ended * LATE_MEDIAN / gap, ended * LATE_P90 / gap, (self._cost[j] - self._cost[k]) / gap

    def _pointwise(self, dense: float, sparse: float) -> tuple[float, float, float]:
        times, sf, levels = self._times, self._sf, self._hazard
        median = p90 = cost = 0.0
        last = len(times) - 1
        k = 0
        while k < last:
            if levels[k] >= sparse:
                gap = LATE_MEDIAN if levels[k] >= dense else LATE_P90
                ended = sf[k] - sf[k + 1]
                cost += (sf[k] + sf[k + 1]) / 2 * (times[k + 1] - times[k]) / gap
                median += ended * min(1.0, LATE_MEDIAN / gap)
                p90 += ended * min(1.0, LATE_P90 / gap)
                k += 1
                continue
            j = k + 1
            while j < last and levels[j] < sparse:
                j += 1
            got = self._jump(k, j)
            median, p90, cost = median + got[0], p90 + got[1], cost + got[2]
            k = j
        return median / self._covered, p90 / self._covered, cost


def _fallback_sf(learned: LogNormal | Predictive) -> Callable[[float], float]:
    """``with_fallback(learned, learned.median).sf`` as one flat mix (one logarithm a time)."""
    parts = learned.parts if isinstance(learned, Predictive) else (learned,)
    share = (1 - FALLBACK_WEIGHT) / len(parts)
    flat = [(share, part.mu, 1 / (part.sigma * _SQRT2)) for part in parts]
    flat.append((FALLBACK_WEIGHT, learned.mu, 1 / (FALLBACK_SIGMA * _SQRT2)))

    def sf(t: float) -> float:
        if t <= 0:
            return 1.0
        log_t = math.log(t)
        return sum(weight * 0.5 * math.erfc((log_t - mu) * inverse) for weight, mu, inverse in flat)

    return sf


def _hazard_from(sf: Callable[[float], float], t: float, running: float) -> float:
    """``hazard`` when ``sf(t)`` (``running``) is known already."""
    if running <= 1e-12:
        return 0.0
    step = max(1e-3 * t, 1e-3)
    return max(running - sf(t + step), 0.0) / step / running


def cold_gap(elapsed: float, interval: float, typical_seconds: float) -> float:
    """The cold schedule: ``interval`` apart, then wider in proportion once a job runs very long."""
    horizon = max(COLD_HORIZON * typical_seconds, COLD_FLOOR)
    return max(interval, interval * elapsed / horizon)


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
    """How long one kind of job takes, learned from finished jobs; None until it has seen enough.

    Log times are kept in order, split into segments at each detected change of speed. The median
    comes from the newest segment alone; the spread from every remembered job's distance to its own
    segment's mean, pooled with ``PRIOR_SIGMA`` counted as ``PRIOR_SIGMA_WEIGHT`` jobs. The
    estimate is predictive: its sigma is widened by ``sqrt(1 + 1/n)`` for a median known from
    ``n`` jobs.
    """

    def __init__(self, *, detect_shifts: bool = True) -> None:
        self._detect = detect_shifts
        self._logs: deque[tuple[int, float]] = deque(maxlen=MAX_SAMPLES)  # (segment, log seconds)
        self._segment = 0
        self._cached: Predictive | None = None
        self._stale = True

    def add(self, seconds: float) -> None:
        if not (seconds > 0 and math.isfinite(seconds)):
            return
        self._logs.append((self._segment, math.log(seconds)))
        self._stale = True
        if self._detect:
            self._detect_shift()

    @property
    def samples(self) -> int:
        return len(self._logs)

    @property
    def current(self) -> int:
        """Jobs in the newest segment (at the current speed)."""
        return sum(1 for segment, _ in self._logs if segment == self._segment)

    def _sigma(self) -> float:
        return self._spread()[0]

    def _spread(self) -> tuple[float, float]:
        """The pooled sigma and its degrees of freedom (the prior's weight counted as freedom)."""
        sums: dict[int, tuple[int, float, float]] = {}
        for segment, x in self._logs:
            n, s, ss = sums.get(segment, (0, 0.0, 0.0))
            sums[segment] = (n + 1, s + x, ss + x * x)
        squares = sum(max(ss - s * s / n, 0.0) for n, s, ss in sums.values())
        freedom = sum(n - 1 for n, _, _ in sums.values())
        variance = (PRIOR_SIGMA_WEIGHT * PRIOR_SIGMA**2 + squares) / (PRIOR_SIGMA_WEIGHT + freedom)
        return min(max(math.sqrt(variance), SIGMA_RANGE[0]), SIGMA_RANGE[1]), PRIOR_SIGMA_WEIGHT + freedom

    def _detect_shift(self) -> None:
        current = [x for segment, x in self._logs if segment == self._segment]
        for k in range(SHIFT_MIN, min(SHIFT_MAX, len(current) - SHIFT_MIN) + 1):
            older, newer = current[:-k], current[-k:]
            diff = sum(newer) / k - sum(older) / len(older)
            error = max(self._sigma(), 0.1) * math.sqrt(1 / k + 1 / len(older))
            if abs(diff) > SHIFT_Z * error:
                self._segment += 1
                cut = len(self._logs) - k
                relabelled = [(self._segment if i >= cut else s, x) for i, (s, x) in enumerate(self._logs)]
                self._logs = deque(relabelled, maxlen=MAX_SAMPLES)
                return

    def evidence(self) -> tuple[list[float], float, float]:
        """The current segment's log times, and the squares and freedom the older segments add to
        sigma."""
        current = [x for segment, x in self._logs if segment == self._segment]
        sums: dict[int, tuple[int, float, float]] = {}
        for segment, x in self._logs:
            if segment != self._segment:
                n, s, ss = sums.get(segment, (0, 0.0, 0.0))
                sums[segment] = (n + 1, s + x, ss + x * x)
        squares = sum(max(ss - s * s / n, 0.0) for n, s, ss in sums.values())
        return current, squares, float(sum(n - 1 for n, _, _ in sums.values()))

    def distribution(self) -> Predictive | None:
        """The predictive log-normal of the next job's time, or None while cold."""
        if self._stale:
            self._stale = False
            current = [x for segment, x in self._logs if segment == self._segment]
            n = len(current)
            if len(self._logs) < MIN_WARM or n < MIN_SEGMENT:
                self._cached = None
            else:
                scale, freedom = self._spread()
                self._cached = Predictive(sum(current) / n, scale, freedom, n)
        return self._cached


def censored_fit(
    complete: Sequence[float], censored: Sequence[float], squares: float = 0.0, freedom: float = 0.0
) -> Predictive | None:
    """The predictive from log times ``complete`` and log times ``censored`` (jobs known only to take
    longer), by EM; None without two complete ones. ``squares`` and ``freedom`` are what other
    segments add to sigma (``DurationModel.evidence``); the prior counts as ever."""
    n = len(complete)
    if n < 2:
        return None
    mu = sum(complete) / n
    own = sum((x - mu) ** 2 for x in complete)
    total = n + len(censored)
    prior = PRIOR_SIGMA_WEIGHT * PRIOR_SIGMA**2 + squares
    weight = PRIOR_SIGMA_WEIGHT + freedom
    sigma = math.sqrt((prior + own) / (weight + n - 1))
    for _ in range(IN_FLIGHT_ROUNDS):
        shifts: list[tuple[float, float]] = []  # per censored: E[x - mu], E[(x - mu)^2]
        for c in censored:
            a = (c - mu) / sigma
            survive = _upper_tail(a)
            ratio = _PHI0 * math.exp(-a * a / 2) / survive if survive > 1e-12 else a
            shifts.append((sigma * ratio, sigma * sigma * (1 + a * ratio)))
        moved = mu + (sum(x - mu for x in complete) + sum(d for d, _ in shifts)) / total
        step = mu - moved
        spread = sum((x - moved) ** 2 for x in complete) + sum(
            d2 + 2 * step * d + step * step for d, d2 in shifts
        )
        sigma_next = math.sqrt((prior + spread) / (weight + total - 1))
        sigma_next = min(max(sigma_next, SIGMA_RANGE[0]), SIGMA_RANGE[1])
        settled = abs(moved - mu) < 1e-4 and abs(sigma_next - sigma) < 1e-4
        mu, sigma = moved, sigma_next
        if settled:
            break
    return Predictive(mu, sigma, weight + n - 1, n)


def kind_of(model: str, params: Mapping[str, Any]) -> str:
    """The key jobs that should take about as long share: the model and its time-changing arguments."""
    parts = [f"{name}={params[name]}" for name in TIME_PARAMS if params.get(name) is not None]
    return "|".join([model, *parts])


def job_seconds(job: Job) -> float | None:
    """How long a completed job took at the provider, from its journal row (None if unknown).

    WaveSpeed's ``timings.inference`` when reported and no longer than the job took here;
    otherwise submission to ``finished_at`` (which also holds the wait for the last poll and the
    download, so it errs long).
    """
    if job.status != "completed" or job.submitted_at is None:
        return None
    total = job.finished_at - job.submitted_at if job.finished_at is not None else None
    if job.inference_ms and (total is None or job.inference_ms / 1000 <= total):
        return job.inference_ms / 1000
    return total if total is not None and total > 0 else None


@dataclass
class _Track:
    """What the planner has seen of one live job."""

    kind: str
    model: str
    origin: float
    readings: list[tuple[float, float]] = field(default_factory=list[tuple[float, float]])
    started: float = 0.0
    last_poll: float | None = None
    done: bool = False


History = Callable[[str], Iterable[Job]]


class PollPlanner:
    """Decides each live job's next poll; learns each kind of job's durations as jobs complete.

    ``history(slug)`` gives the model's completed journal rows, oldest first; it is asked once per
    model, the first time a job of that model is planned.

    A completed job's duration is learned once every job of its kind submitted before it has
    ended too (or once ``MAX_SAMPLES`` are waiting): of a burst of jobs sent together the quick
    ones end first, and learning from them alone would teach that jobs are quicker than they are.
    """

    def __init__(self, policy: PollPolicy, history: History | None = None) -> None:
        self._policy = policy
        self._history = history
        self._models: dict[str, DurationModel] = {}  # by kind, and by model slug
        self._loaded: set[str] = set()
        self._spacings: dict[tuple[int, int, int], Spacing] = {}
        self._tracks: dict[str, _Track] = {}
        self._unlearned: dict[str, list[tuple[float, float]]] = {}  # kind -> (submitted, seconds)
        self._ends = 0  # jobs seen ending (what is in flight changes)
        self._adjusted: dict[str, tuple[tuple[int, Predictive], float, Predictive]] = {}

    def _load(self, slug: str) -> None:
        if slug in self._loaded:
            return
        self._loaded.add(slug)
        if self._history is not None:
            for row in self._history(slug):
                if (seconds := job_seconds(row)) is not None:
                    self._add(kind_of(slug, row.params), slug, seconds)

    def _add(self, kind: str, slug: str, seconds: float) -> None:
        self.model(kind).add(seconds)
        self.model(slug + POOLED).add(seconds)

    def model(self, kind: str) -> DurationModel:
        """What has been learned of one kind (``kind_of``), or of a whole model's jobs (its slug and
        ``POOLED``). A whole model's jobs mix kinds, so a run of one kind there is no change of
        speed: only a kind's own record is watched for one."""
        found = self._models.get(kind)
        if found is None:
            found = self._models[kind] = DurationModel(detect_shifts=not kind.endswith(POOLED))
            self._load(kind.split("|", 1)[0])
        return found

    def learned(self, job: Job, now: float | None = None) -> Predictive | None:
        """The learned distribution for ``job``, None while cold: its kind's or its model's, whichever
        is narrower (a young kind is less sure than the whole model, unless its kinds differ).

        Its median also heeds the jobs of that kind or model still in flight (``_in_flight``).
        """
        kind = kind_of(job.model, job.params)
        own = self.model(kind).distribution()
        pooled = self.model(job.model + POOLED).distribution()
        if own is None or (pooled is not None and pooled.sigma < own.sigma):
            if pooled is None:
                return None
            return self._in_flight(job.model + POOLED, pooled, now)
        return self._in_flight(kind, own, now)

    def _in_flight(self, key: str, base: Predictive, now: float | None) -> Predictive:
        """``base`` with the jobs in flight: those that ended but wait to be learned (complete), and
        those still running (each known to take longer than its last poll), by EM on the log times
        for the median and sigma together. So the quick first ends of a burst teach without
        fooling: the jobs sent with them and still running pull the median and spread back up."""
        cached = self._adjusted.get(key)
        stamp = now if now is not None else -math.inf
        if cached is not None and cached[0] == (self._ends, base) and stamp - cached[1] < IN_FLIGHT_REFRESH:
            return cached[2]
        pooled = key.endswith(POOLED)
        slug = key.split("|", 1)[0]

        def ours(kind: str) -> bool:
            return kind.split("|", 1)[0] == slug if pooled else kind == key

        ended = [math.log(s) for kind, waiting in self._unlearned.items() if ours(kind) for _, s in waiting]
        running = [
            math.log(track.last_poll)
            for track in self._tracks.values()
            if not track.done and track.last_poll and track.last_poll > 0 and ours(track.kind)
        ]
        found = base
        if ended or running:
            current, squares, freedom = self.model(key).evidence()
            found = censored_fit([*current, *ended], running, squares, freedom) or base
        if len(self._adjusted) > 4096:
            self._adjusted.clear()
        self._adjusted[key] = ((self._ends, base), stamp, found)
        return found

    def observe(self, job: Job, spec: ModelSpec | None, now: float) -> None:
        """Record a status just read: a progress reading, or the job's end (its duration is learned)."""
        del spec  # the catalog's time is no evidence of a job's
        track = self._tracks.get(job.id)
        if track is None:
            track = self._tracks[job.id] = _Track(kind_of(job.model, job.params), job.model, _origin(job))
        elapsed = now - track.origin
        previous = track.last_poll
        track.last_poll = elapsed
        if job.video_url is not None or job.is_final:
            if job.video_url is not None and not track.done:
                track.done = True
                seconds = _ended(previous, elapsed, job.inference_ms)
                self._unlearned.setdefault(track.kind, []).append((track.origin, seconds))
                self._ends += 1
                self._learn(track.kind)
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
            self._learn(track.kind)

    def _learn(self, kind: str) -> None:
        waiting = self._unlearned.get(kind)
        if not waiting:
            return
        running = [t.origin for t in self._tracks.values() if t.kind == kind and not t.done]
        cutoff = min(running, default=math.inf)
        waiting.sort()
        slug = kind.split("|", 1)[0]
        while waiting and (waiting[0][0] <= cutoff or len(waiting) > MAX_SAMPLES):
            self._add(kind, slug, waiting.pop(0)[1])

    def finish(self, job: Job, now: float | None = None) -> Finish | None:
        """The current estimate of when ``job`` finishes (seconds since submitted); None while cold.

        What its kind of job was seen to take, mixed with the line through its progress readings
        when there is one.
        """
        learned = self.learned(job, now)
        return None if learned is None else self._finish(job, learned)

    def _finish(self, job: Job, learned: Predictive) -> Finish:
        track = self._tracks.get(job.id)
        if track is not None and track.readings:
            extrapolated = progress_finish(track.readings, track.started)
            if extrapolated is not None:
                blended = Mixture(((PROGRESS_WEIGHT, extrapolated), (1 - PROGRESS_WEIGHT, learned)))
                return with_fallback(blended, learned.median)
        return with_fallback(learned, learned.median)

    def spacing(self, learned: Predictive) -> Spacing:
        """The warm spacing for ``learned``, calibrated once per nearby estimate."""
        step_mu, step_sigma = CALIBRATION_GRID
        key = (
            round(learned.mu / step_mu),
            round(learned.sigma / step_sigma),
            round(2 * math.log2(max(learned.freedom, 1.0))),
        )
        found = self._spacings.get(key)
        if found is None:
            if len(self._spacings) > 1024:
                self._spacings.clear()
            sigma = max(key[1] * step_sigma, SIGMA_RANGE[0])
            grid = Predictive(key[0] * step_mu, sigma, 2 ** (key[2] / 2), 0)
            found = self._spacings[key] = calibrate(grid, self._policy)
        return found

    def next_delay(self, job: Job, spec: ModelSpec | None, now: float) -> float:
        """Seconds to wait before polling ``job`` again."""
        policy = self._policy
        elapsed = max(now - _origin(job), 0.0)
        learned = self.learned(job, now)
        if learned is None:
            typical = spec.typical_seconds if spec is not None else 60.0
            return min(cold_gap(elapsed, policy.cold_interval, typical), max(policy.max_interval, 1.0))
        rule = self.spacing(learned)
        finish = self._finish(job, learned)
        return max(next_gap(elapsed, finish, rule, max_gap=policy.max_interval), policy.min_interval)


def _ended(previous: float | None, seen: float, inference_ms: int | None) -> float:
    """When a job seen done at ``seen`` (and running at ``previous``) ended, in seconds since submit.

    The provider's inference time says when if it falls between the two polls; before it, the job
    also queued, and the middle of the bracket is the best guess. A job done at its first look
    has no lower bound: its inference time, else ``seen`` (erring long, never short).
    """
    inference = inference_ms / 1000 if inference_ms else None
    if previous is None:
        return min(inference, seen) if inference is not None else seen
    if inference is not None and previous <= inference <= seen:
        return inference
    return (previous + seen) / 2


def _origin(job: Job) -> float:
    return job.submitted_at if job.submitted_at is not None else job.created_at
