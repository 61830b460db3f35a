"""The one place where httpx errors and HTTP statuses become this server's errors.

Retry rules (after anthropic-sdk-python's ``_should_retry``): a request that cannot have changed
anything (a status GET, a price quote) is retried on 408/409/429/5xx and on transport errors,
honouring ``Retry-After`` with capped, jittered exponential backoff. A submit is retried only
when the provider certainly did not act on it: a 429, or a connection that never opened.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import httpx

from server.errors import AuthError, ProviderError, RateLimited, Rejected, Unavailable
from server.settings import PollPolicy

log = logging.getLogger("wan_video_mcp.http")

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
POLL_ATTEMPTS = 4
_SECRETISH = re.compile(
    r"(Bearer\s+)\S+|([?&](?:X-Amz-[^=&]+|Signature|Expires|Key-Pair-Id|token|sig|se|sp)=)[^&\s]+", re.I
)


def as_dict(value: object) -> dict[str, Any] | None:
    """A JSON object as a typed dict (``None`` for anything else)."""
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def as_list(value: object) -> list[Any]:
    """A JSON array as a typed list (empty for anything else)."""
    return cast(list[Any], value) if isinstance(value, list) else []


def epoch_seconds(value: object) -> float | None:
    """A vendor's timestamp as seconds since the epoch: ISO 8601 (``Z``, an offset, or none for UTC),
    or a number of seconds or of milliseconds since the epoch. None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value) / 1000 if value > 1e11 else float(value)  # 1e11 s is the year 5138
        return seconds if math.isfinite(seconds) and seconds > 0 else None
    if isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


class MaybeSent(Unavailable):
    """The request may have reached the provider; its answer was lost or unreadable."""


_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Make ``scrub`` cut this value (an API key) wherever it appears."""
    if len(value) >= 6:
        _SECRETS.add(value)


def scrub(text: str, limit: int = 300) -> str:
    """Provider text made safe for a message: no keys, no bearer tokens, no signatures, bounded."""
    for secret in _SECRETS:
        text = text.replace(secret, "[redacted]")
    cleaned = _SECRETISH.sub(lambda m: (m.group(1) or m.group(2) or "") + "[redacted]", text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def safe_url(url: str) -> str:
    """A URL for logs: scheme, host and path only (signed query strings are cut)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<unparseable url>"
    return str(parsed.copy_with(query=None, fragment=None, userinfo=b""))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("retry-after") or response.headers.get("retry-after-ms")
    if value is None:
        return None
    try:
        seconds = float(value)
        if "retry-after-ms" in response.headers and "retry-after" not in response.headers:
            seconds /= 1000
        return max(seconds, 0.0)
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(parsed.timestamp() - time.time(), 0.0)


def backoff(attempt: int, policy: PollPolicy, retry_after: float | None = None) -> float:
    """Delay before retry ``attempt`` (1-based): jittered exponential, capped; Retry-After wins."""
    if retry_after is not None:
        return min(retry_after, policy.retry_cap)
    base = min(policy.retry_base * 2 ** (attempt - 1), policy.retry_cap)
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def error_message(response: httpx.Response) -> str:
    """The provider's own words for an error response, scrubbed."""
    try:
        payload: Any = response.json()
    except ValueError:
        return scrub(response.text) if response.text.strip() else response.reason_phrase
    top = as_dict(payload)
    if top is not None:
        for source in (top, as_dict(top.get("status")), as_dict(top.get("data"))):
            for key in ("message", "error", "error_message", "detail"):
                value = source.get(key) if source is not None else None
                if isinstance(value, str) and value.strip():
                    return scrub(value)
    return scrub(json.dumps(payload))


def raise_for_status(response: httpx.Response, provider: str, what: str) -> None:
    """Map an HTTP error status to the error tree."""
    status = response.status_code
    if status < 400:
        return
    said = error_message(response)
    label = {"wavespeed": "WaveSpeed", "vtrix": "Vtrix"}.get(provider, provider)
    if status == 401:
        raise AuthError(f"{label} refused the API key ({status}: {said}).", provider=provider, status=status)
    if status == 403:
        raise AuthError(
            f"{label} refused the request ({status}: {said}); the key may lack permission or the "
            "account's balance may be too low.",
            provider=provider,
            status=status,
        )
    if status == 429:
        raise RateLimited(
            f"{label} is rate-limiting requests ({said}).",
            provider=provider,
            retry_after=retry_after_seconds(response),
        )
    if status >= 500 or status in (408, 409):
        raise Unavailable(f"{label} failed to {what} ({status}: {said}).", provider=provider, status=status)
    raise Rejected(
        f"{label} rejected the request to {what} ({status}: {said}).", provider=provider, status=status
    )


def read_json(response: httpx.Response, provider: str, what: str) -> dict[str, Any]:
    """The JSON object in a successful response."""
    try:
        payload: Any = response.json()
    except ValueError as exc:
        raise Unavailable(
            f"{provider} answered {what} with something that is not JSON.", provider=provider
        ) from exc
    body = as_dict(payload)
    if body is None:
        raise Unavailable(f"{provider} answered {what} with unexpected JSON.", provider=provider)
    return body


async def send_idempotent(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    what: str,
    policy: PollPolicy,
    headers: Mapping[str, str],
    json_body: Any = None,
    attempts: int = POLL_ATTEMPTS,
) -> dict[str, Any]:
    """A request that changes nothing at the provider, retried on transient failures."""
    last: ProviderError | None = None
    for attempt in range(1, attempts + 1):
        retry_after: float | None = None
        try:
            response = await client.request(method, url, headers=headers, json=json_body)
            if response.status_code in RETRYABLE_STATUS:
                retry_after = retry_after_seconds(response)
            raise_for_status(response, provider, what)
            return read_json(response, provider, what)
        except RateLimited as exc:
            last, retry_after = exc, exc.retry_after
        except Unavailable as exc:
            last = exc
        except httpx.TransportError as exc:
            last = Unavailable(
                f"Could not reach {provider} to {what} ({type(exc).__name__}).", provider=provider
            )
            last.__cause__ = exc
        if attempt < attempts:
            delay = backoff(attempt, policy, retry_after)
            log.info("retrying %s %s in %.2fs after: %s", method, safe_url(url), delay, last)
            await anyio.sleep(delay)
    assert last is not None
    raise last


async def send_submit(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    policy: PollPolicy,
    headers: Mapping[str, str],
    json_body: Any,
) -> dict[str, Any]:
    """POST a job. Retried only when the provider certainly did not act on it.

    Raises:
        MaybeSent: the request may have created a job whose answer we never read.
        ProviderError: the provider refused it; nothing was created.
    """
    for attempt in range(1, policy.submit_attempts + 1):
        try:
            response = await client.post(url, headers=headers, json=json_body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The connection never opened, so the request never left this machine.
            if attempt == policy.submit_attempts:
                raise Unavailable(
                    f"Could not connect to {provider} ({type(exc).__name__}); nothing was submitted.",
                    provider=provider,
                ) from exc
            await anyio.sleep(backoff(attempt, policy))
            continue
        except httpx.TransportError as exc:
            raise MaybeSent(
                f"The connection to {provider} failed after the request was sent ({type(exc).__name__}).",
                provider=provider,
            ) from exc
        if response.status_code == 429 and attempt < policy.submit_attempts:
            await anyio.sleep(backoff(attempt, policy, retry_after_seconds(response)))
            continue
        if response.status_code >= 500:
            # A 5xx may come from a gateway that timed out while the job was being created.
            raise MaybeSent(
                f"{provider} answered the submit with {response.status_code} ({error_message(response)}).",
                provider=provider,
                status=response.status_code,
            )
        raise_for_status(response, provider, "accept the job")
        try:
            return read_json(response, provider, "the submit")
        except Unavailable as exc:
            raise MaybeSent(str(exc), provider=provider, status=response.status_code) from exc
    raise AssertionError("unreachable")  # pragma: no cover
