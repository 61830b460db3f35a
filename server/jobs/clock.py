"""When a job began at the provider, on this machine's clock.

A submit's answer comes back some time after the provider took the job, so stamping the job with
the answer's arrival makes it look younger than it is: the schedule would then poll that much
late. The provider stamps the job itself (``created_at``), but on its own clock, which may be off
from ours by more than the round trip.
"""

from __future__ import annotations

from collections import deque

# Submits remembered per provider for reading its clock's offset.
OFFSET_SAMPLES = 64


class SubmitClock:
    """Places each job's start at its provider inside the round trip of the submit that made it.

    The provider's clock offset is read from the quickest recent submit (its ``created_at`` minus
    the midpoint of its round trip, right to within half that round trip). A job's start is its
    ``created_at`` less that offset, kept between the request's sending and its answer, so a wrong
    clock can never place it outside what was seen. Without a ``created_at``: the answer's arrival.
    """

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, float]]] = {}  # provider -> (round trip, offset)

    def started(self, provider: str, sent: float, answered: float, created: float | None) -> float:
        """When the job a submit sent at ``sent`` and answered at ``answered`` began (our clock)."""
        if created is None or answered < sent:
            return answered
        samples = self._samples.setdefault(provider, deque(maxlen=OFFSET_SAMPLES))
        samples.append((answered - sent, created - (sent + answered) / 2))
        offset = min(samples)[1]
        return min(max(created - offset, sent), answered)
