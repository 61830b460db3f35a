"""Provider adapters: one protocol, one adapter per vendor.

An adapter knows only httpx and the catalog entry. It turns a model's request body into the
vendor's submit call, and the vendor's status payload into a ``ProviderStatus`` (parsed in one
function per vendor, so every documented spelling is handled in one place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from server.catalog import ModelSpec, ProviderName
from server.settings import Settings

JobState = Literal["queued", "running", "completed", "failed"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed"})


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """A provider's view of one job, normalised."""

    state: JobState
    raw_status: str = ""
    progress: float | None = None
    video_url: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    inference_ms: int | None = None
    created_at: float | None = None  # when the provider says it took the job: its clock, epoch seconds


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submit the provider accepted."""

    provider_job_id: str
    status: ProviderStatus


class Provider(Protocol):
    """What the job runner needs of a vendor."""

    name: ProviderName

    def require_key(self) -> None:
        """Raise ConfigError naming the variable when this provider has no key."""
        ...

    async def submit(self, spec: ModelSpec, body: dict[str, Any], *, webhook: bool = False) -> Submitted:
        """Create a job. Never retried once the request may have reached the provider.

        ``webhook``: ask the provider to call back when it ends (only where ``webhook_secret``
        gave a secret).
        """
        ...

    async def poll(self, provider_job_id: str) -> ProviderStatus:
        """Read a job's status (retried on 429, 5xx and transport errors)."""
        ...

    async def find_submissions(self, spec: ModelSpec, after: float, before: float) -> list[str] | None:
        """Ids of this model's jobs created between two times (``None``: no way to look)."""
        ...

    async def quote(self, spec: ModelSpec, body: dict[str, Any]) -> float | None:
        """The provider's own price for this request, when it offers one."""
        ...

    async def check_key(self) -> str:
        """One cheap authenticated call; returns a short description (e.g. the balance)."""
        ...

    async def webhook_secret(self) -> str | None:
        """The secret that signs this provider's callbacks (``None``: it has no webhooks)."""
        ...


def build_providers(settings: Settings, client: httpx.AsyncClient) -> dict[ProviderName, Provider]:
    """One adapter per vendor, sharing the server's HTTP client."""
    from server.providers.vtrix import VtrixProvider
    from server.providers.wavespeed import WaveSpeedProvider

    return {
        "wavespeed": WaveSpeedProvider(settings, client),
        "vtrix": VtrixProvider(settings, client),
    }
