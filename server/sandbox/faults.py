"""Faults a test can inject into the emulator, one request at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "malformed", "drop", "delay", "truncate", "slow"]


@dataclass(frozen=True)
class Fault:
    """One way for a route to misbehave; build it with the constructors below.

    - ``status``: answer ``code`` with the vendor's error body (or ``body``); nothing is done.
    - ``malformed``: answer 200 with a body that is not JSON; nothing is done.
    - ``drop``: do the route's work (a submit creates its job), then lose the answer mid-body.
    - ``delay``: wait ``seconds``, then handle the request normally, unless the client gave up.
    - ``truncate``: send the full Content-Length but only half the bytes (meant for ``file``).
    - ``slow``: do the route's work, then send the answer in ``chunks`` pieces over ``seconds``.
    """

    kind: FaultKind
    code: int = 0
    retry_after: float | None = None
    body: object | None = None
    seconds: float = 0.0
    chunks: int = 4

    @classmethod
    def status(cls, code: int, retry_after: float | None = None, body: object | None = None) -> Fault:
        """Answer this HTTP status, with a ``Retry-After`` header when ``retry_after`` is given."""
        return cls("status", code=code, retry_after=retry_after, body=body)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with an HTML body instead of JSON."""
        return cls("malformed")

    @classmethod
    def drop(cls) -> Fault:
        """Do the work, then close the connection before the whole answer is sent."""
        return cls("drop")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before handling the request (to trip client timeouts)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def truncate(cls) -> Fault:
        """Send headers for the full body but only half of its bytes."""
        return cls("truncate")

    @classmethod
    def slow(cls, seconds: float, chunks: int = 4) -> Fault:
        """Do the work, then trickle the answer out in ``chunks`` pieces spread over ``seconds``.

        Past the client's read timeout this is a request whose effect happened but whose answer
        never fully arrived (like ``drop``, but after a wait); within it, just a slow body.
        """
        return cls("slow", seconds=seconds, chunks=max(1, chunks))
