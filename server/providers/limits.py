"""A request-rate cap per provider, shared by every job's poller.

Each provider gets a token bucket (kept as the "theoretical arrival time" of GCRA, so it is one
number): ``burst`` requests may go at once, then one every ``1/rate`` seconds. A caller takes the
next free slot synchronously and sleeps until it, so waiters go in the order they asked and the
bucket never needs a lock. A 429 with Retry-After holds the whole provider back, not just the job
that met it: the limit is the account's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


class RateLimit:
    """At most ``burst`` requests at once, then ``rate`` per second, in the order asked."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._spacing = 1.0 / rate
        self._tolerance = (burst - 1) * self._spacing
        self._clock = clock
        self._sleep = sleep
        self._next = -float("inf")  # when the bucket would be full again, less one request

    def reserve(self) -> float:
        """Take the next free slot; return the seconds to wait until it (0: go now)."""
        now = self._clock()
        due = max(self._next, now)
        self._next = due + self._spacing
        return max(due - self._tolerance - now, 0.0)

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (a Retry-After); then one request per slot."""
        self._next = max(self._next, self._clock() + seconds + self._tolerance)

    async def acquire(self) -> None:
        """Wait for a slot."""
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)


class ProviderLimits:
    """One ``RateLimit`` per provider name, made on first use; ``rate`` None means no limit."""

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        self._rate = rate
        self._burst = burst
        self._limits: dict[str, RateLimit] = {}

    def _limit(self, provider: str) -> RateLimit | None:
        if self._rate is None:
            return None
        limit = self._limits.get(provider)
        if limit is None:
            limit = self._limits[provider] = RateLimit(self._rate, self._burst)
        return limit

    async def acquire(self, provider: str) -> None:
        limit = self._limit(provider)
        if limit is not None:
            await limit.acquire()

    def hold(self, provider: str, seconds: float) -> None:
        limit = self._limit(provider)
        if limit is not None and seconds > 0:
            limit.hold(seconds)
