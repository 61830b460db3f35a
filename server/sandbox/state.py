"""The emulator's records: requests it saw, jobs it created, files it was given."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Provider = Literal["wavespeed", "vtrix"]
JobState = Literal["queued", "running", "completed", "failed"]
Size = tuple[int, int]


@dataclass(frozen=True)
class RecordedCall:
    """One HTTP request as the emulator received it (``at``: ``time.monotonic()`` on arrival)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: object | None
    route: str
    at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class VideoSpec:
    """What a job's video should look like.

    ``sizes`` lists the output sizes the model can produce; the one whose aspect ratio is
    closest to the input image's is rendered.
    """

    image: str
    duration: int
    sizes: tuple[Size, ...]


@dataclass
class EmuJob:
    """A job the emulator accepted (``duration``: seconds it runs, when drawn for it)."""

    id: str
    provider: Provider
    model: str
    body: dict[str, object]
    video: VideoSpec
    cost: float
    state: JobState = "queued"
    polls: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    failure: str | None = None
    released: bool = False
    error: str = ""
    started: float = field(default_factory=time.monotonic, repr=False)
    finished: float | None = field(default=None, repr=False)
    duration: float | None = None
    rendered: bytes | None = field(default=None, repr=False)
    webhook: str | None = None
    base: str = ""

    @property
    def terminal(self) -> bool:
        """True once the job has completed or failed."""
        return self.state in ("completed", "failed")

    def elapsed_ms(self) -> int:
        """Milliseconds from creation to the end of the job (or to now while it runs)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return max(1, round((end - self.started) * 1000))


@dataclass
class Upload:
    """A file handed to the WaveSpeed upload routes; ``data`` is None until its PUT arrives."""

    token: str
    filename: str
    content_type: str
    size: int
    data: bytes | None = field(default=None, repr=False)
