"""A request-rate cap per provider, shared by every job's poller.

Time is cut into windows of ``burst / rate`` seconds, and each window takes at most ``burst``
requests: ``rate`` a second on average, in any window of ``k * burst / rate`` seconds at most
``(k + 1) * burst``. A caller takes a place in the first window, at or after the time it wants,
that still has room, synchronously, then sleeps until then: places are handed out in the order
asked and nothing needs a lock. When the limit binds, the requests of a window go out together at
its start, so a thousand waiting jobs wake the process ``rate / burst`` times a second rather than
``rate`` times. A caller can ask for a place some seconds ahead (its next planned poll), so one
sleep covers both the plan and the limit. A caller woken after its window has ended (a busy
event loop) takes a place again rather than add to the window it woke in, so a stall does not let
the places of several windows go out together. A 429's Retry-After holds the whole provider back,
not just the job that met it: the limit is the account's.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio

# Past windows are forgotten once this many are remembered.
_PRUNE_AT = 64


class RateLimit:
    """At most ``burst`` requests in each ``burst / rate``-second window, in the order asked."""

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
        self._window = burst / rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._taken: dict[int, int] = {}

    def _index(self, t: float) -> int:
        # A window's own start (``index * window``, rounded) must fall in that window, not the one before.
        return math.floor(t / self._window + 1e-9)

    def reserve(self, delay: float = 0.0) -> float:
        """Take the first free place at least ``delay`` seconds from now; return the seconds until it."""
        return self._take(delay)[1]

    def _take(self, delay: float) -> tuple[int, float]:
        now = self._clock()
        wanted = now + max(delay, 0.0)
        window = self._index(wanted)
        while self._taken.get(window, 0) >= self._burst:
            window += 1
        self._taken[window] = self._taken.get(window, 0) + 1
        if len(self._taken) > _PRUNE_AT:
            current = self._index(now)
            self._taken = {w: n for w, n in self._taken.items() if w >= current}
        return window, max(wanted, window * self._window) - now

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (a Retry-After)."""
        now = self._clock()
        for window in range(self._index(now), self._index(now + seconds) + 1):
            self._taken[window] = self._burst

    async def acquire(self, delay: float = 0.0) -> None:
        """Wait ``delay`` seconds, or longer, until a place is free."""
        window, wait = self._take(delay)
        while wait > 0:
            await self._sleep(wait)
            # Woken after its window ended (a busy event loop): sending now would add to the current
            # window's burst, so it takes a place again (the old one stays spent).
            if self._index(self._clock()) <= window:
                return
            window, wait = self._take(0.0)


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

    async def acquire(self, provider: str, delay: float = 0.0) -> None:
        """Wait ``delay`` seconds, then for a free place under ``provider``'s limit."""
        limit = self._limit(provider)
        if limit is not None:
            await limit.acquire(delay)
        else:
            await anyio.sleep(delay)

    def hold(self, provider: str, seconds: float) -> None:
        limit = self._limit(provider)
        if limit is not None and seconds > 0:
            limit.hold(seconds)
