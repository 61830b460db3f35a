"""How few polls a schedule can send, when the distribution of job times is known exactly.

For a log-normal job time and a wait budget (median wait at most ``m``, 90th percentile at most
``q``), the cheapest plan of poll times found on a grid (``--step`` seconds apart, gaps
``--min-gap`` to ``--max-gap``). The constrained problem is solved through its Lagrangian: for
multipliers (lambda, mu) a dynamic programme over the grid finds the plan minimising
``polls - lambda P(wait <= m) - mu P(wait <= q)``; the multipliers are walked towards the highest
dual value, and of the plans met on the way the cheapest that keeps both budgets (checked exactly,
off the grid) is reported. The grid rounds the budgets, so this is the best plan found, not a
proof that none is better.

Beside it, in the same run: a fixed 1 s poller, and the server's own rule
(``server.jobs.schedule.calibrate``) planned on the exact distribution. This is what the sweep in
``bench/polling.py`` cannot show: how much of a schedule's cost is the shape of its plan, and how
much is what five finished jobs cannot teach.

    .venv/bin/python bench/polling_bound.py [--cells 8:0.3,8:0.6,60:0.3,60:0.6]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.jobs.schedule import (
    LATE_MEDIAN,
    LATE_P90,
    LogNormal,
    calibrate,
    expected_polls,
    plan,
    with_fallback,
)
from server.settings import DEFAULT_POLL

FIXED_GAP = 1.01  # a 1 s poller whose answers take 10 ms, as in bench/polling.py


def wait_quantile(times: Sequence[float], finish: LogNormal, share: float) -> float:
    """The ``share`` quantile of the wait from a job's end to the first poll at or after it."""

    def seen_within(wait: float) -> float:
        total, previous = 0.0, 0.0
        for t in times:
            total += finish.sf(max(previous, t - wait)) - finish.sf(t)
            previous = t
        return total

    low, high = 0.0, 60.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (low, middle) if seen_within(middle) >= share else (middle, high)
    return high


def figures(times: Sequence[float], finish: LogNormal) -> tuple[float, float, float]:
    """(expected polls per job, median wait, 90th percentile wait)."""
    return expected_polls(times, finish), wait_quantile(times, finish, 0.5), wait_quantile(times, finish, 0.9)


def fixed_plan(finish: LogNormal) -> list[float]:
    times, t = [0.0], 0.0
    while finish.sf(t) > 1e-6:
        t += FIXED_GAP
        times.append(t)
    return times


class Lagrangian:
    """The dynamic programme on a grid of poll times for one distribution and wait budget."""

    def __init__(self, finish: LogNormal, m: float, q: float, step: float, gaps: tuple[float, float]) -> None:
        self.step = step
        self.horizon = int(finish.quantile(4.0) / step) + 1
        self.sf = [finish.sf(i * step) for i in range(self.horizon + 1)]
        self.km, self.kq = round(m / step), round(q / step)
        self.k0, self.k1 = max(1, round(gaps[0] / step)), round(gaps[1] / step)

    def solve(self, lam: float, mu: float) -> tuple[float, list[float]]:
        """The least Lagrangian value of a plan ending at the horizon, and that plan's poll times."""
        sf, km, kq = self.sf, self.km, self.kq
        last = self.horizon
        best = [math.inf] * (last + 1)
        back = [-1] * (last + 1)
        best[0] = 0.0
        for a in range(last):
            here = best[a]
            if here == math.inf:
                continue
            running = sf[a]
            for b in range(a + self.k0, min(a + self.k1, last) + 1):
                seen = sf[b]
                value = here + running - lam * (sf[max(a, b - km)] - seen) - mu * (sf[max(a, b - kq)] - seen)
                if value < best[b]:
                    best[b], back[b] = value, a
        times: list[float] = []
        b = last
        while b > 0:
            times.append(b * self.step)
            b = back[b]
        return best[last], sorted(times)


def best_plan(finish: LogNormal, m: float, q: float, step: float, gaps: tuple[float, float]) -> float:
    """The expected polls of the cheapest plan found within budget for ``finish`` (inf if none)."""
    dp = Lagrangian(finish, m, q, step, gaps)
    scale = finish.median / 8
    lam, mu, stride = 6 * scale, 3 * scale, 4 * scale
    dual, witness = -math.inf, math.inf
    while stride > 0.05 * scale:
        moved = False
        for d_lam, d_mu in ((0, 0), (stride, 0), (-stride, 0), (0, stride), (0, -stride)):
            l2, m2 = max(0.0, lam + d_lam), max(0.0, mu + d_mu)
            value, times = dp.solve(l2, m2)
            polls, median, p90 = figures(times, finish)
            if median <= m and p90 <= q:
                witness = min(witness, polls)
            if value + 0.5 * l2 + 0.9 * m2 > dual + 1e-9:
                dual, lam, mu, moved = value + 0.5 * l2 + 0.9 * m2, l2, m2, True
        if not moved:
            stride /= 2
    return witness


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cells", default="8:0.3,8:0.6,60:0.3,60:0.6", help="median:sigma,...")
    parser.add_argument("--step", type=float, default=0.05, help="grid step, seconds (x sqrt(median / 8))")
    parser.add_argument("--min-gap", type=float, default=DEFAULT_POLL.min_interval)
    parser.add_argument("--max-gap", type=float, default=DEFAULT_POLL.max_interval)
    args = parser.parse_args()
    gaps = (args.min_gap, args.max_gap)
    budgets = (
        ("the targets (1 s poller's median, p90 + 0.5 s)", 0.505, 0.909 + 0.5),
        ("the schedule's own", LATE_MEDIAN, LATE_P90),
    )
    print(
        "| jobs | wait budget (median / p90) | 1 s poller polls | best plan found (grid DP) | "
        "the schedule's rule, known distribution |"
    )
    print("| --- | --- | --- | --- | --- |")
    for cell in args.cells.split(","):
        median, sigma = (float(x) for x in cell.split(":"))
        finish = LogNormal.from_median(median, sigma)
        fixed = figures(fixed_plan(finish), finish)
        rule = calibrate(finish, DEFAULT_POLL)
        ours = figures(plan(with_fallback(finish, median), rule, max_gap=args.max_gap), finish)
        for name, m, q in budgets:
            witness = best_plan(finish, m, q, args.step * math.sqrt(max(median / 8, 1.0)), gaps)
            print(
                f"| median {median:.0f} s, sigma {sigma} | {name}: {m:.2f} / {q:.2f} s | {fixed[0]:.2f} | "
                f"x{witness / fixed[0]:.3f} | "
                + (
                    f"x{ours[0] / fixed[0]:.3f} (median {ours[1]:.2f} s, p90 {ours[2]:.2f} s) |"
                    if m == LATE_MEDIAN
                    else "|"
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
