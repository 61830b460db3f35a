"""One exception tree for the whole server.

    WanMcpError                     every failure this server reports on purpose
    ├── ConfigError                 a setting is missing or wrong (names the variable)
    ├── InvalidRequest              the caller's arguments are refused; nothing was sent
    ├── SpendRefused                a cap or budget refuses the job; nothing was sent
    ├── ConfirmationRequired        the user must agree to the price first
    ├── JobNotFound                 no job has that id
    ├── ProviderError(provider, status)
    │   ├── AuthError               the provider refused the key (401/403)
    │   ├── RateLimited(retry_after)
    │   ├── Rejected                the provider refused the request (4xx); nothing was created
    │   └── Unavailable             5xx, transport failure or unreadable answer
    ├── FetchError                  a result download failed (server/media/fetch.py)
    │   └── UnsafeURL               the URL is not one this server may fetch
    ├── JobFailed(job_id, reason)   the provider ran the job and it failed
    └── SubmissionUnknown(job_id)   a submit may have reached the provider but no answer came

Lower-level errors (httpx, sqlite, pydantic) are converted into this tree at exactly one
boundary each, with ``raise ... from exc``. At the MCP edge (``tools/``) every ``WanMcpError``
becomes a ``ToolError`` whose text is ``str(exc)``: messages are written for the agent, say
what to do next, and never contain a key, an Authorization header or a signed URL.
"""

from __future__ import annotations


class WanMcpError(Exception):
    """Base of every error this server reports on purpose."""


class ConfigError(WanMcpError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidRequest(WanMcpError):
    """The caller's arguments were refused before anything was sent or charged."""


class SpendRefused(WanMcpError):
    """A per-job cap or the budget refuses the job before anything is sent."""


class ConfirmationRequired(WanMcpError):
    """The price is above the confirmation threshold and the user has not agreed to it."""


class JobNotFound(WanMcpError):
    """No job with that id exists in the journal."""


class ProviderError(WanMcpError):
    """The provider answered with an error, or could not be reached."""

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class AuthError(ProviderError):
    """The provider refused the API key (401, or 403 for Vtrix)."""


class RateLimited(ProviderError):
    """The provider asked us to slow down (429)."""

    def __init__(
        self, message: str, *, provider: str, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class Rejected(ProviderError):
    """The provider refused the request (4xx other than auth and rate limits)."""


class Unavailable(ProviderError):
    """A 5xx, a transport failure or an answer that could not be read."""


class JobFailed(WanMcpError):
    """The provider ran the job and reported failure."""

    def __init__(self, message: str, *, job_id: str, reason: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.reason = reason


class SubmissionUnknown(WanMcpError):
    """A submit may have reached the provider, but its answer was lost."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id
