"""WaveSpeed media uploads: the image bytes go up once, the job gets their ``download_url``.

Two documented routes exist (providers.md 1.5) and which one is live cannot be known in advance:

- ticket: ``POST /api/v3/media/uploads`` ``{filename, size, content_type}`` answers
  ``data.upload {method, url, headers}``; the bytes are PUT there with exactly those headers and
  no Authorization; ``data.download_url`` is the image's URL;
- binary: ``POST /api/v3/media/upload/binary`` with the multipart field ``file`` answers
  ``data.download_url``.

The ticket route is tried first (today's SDK uses it); a 404 or 405 falls back to the other one,
and the route that worked is tried first from then on. Uploads cost nothing and change nothing a
retry could double, so they are retried on 429, 5xx and transport errors. The same bytes are
uploaded once a day: the journal remembers each upload's URL by SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Literal

import anyio
import httpx

from server.errors import ConfigError, ProviderError, Rejected, Unavailable
from server.jobs.store import JobStore
from server.media.fetch import FetchError, UrlPolicy
from server.providers.http import (
    RETRYABLE_STATUS,
    as_dict,
    backoff,
    raise_for_status,
    read_json,
    retry_after_seconds,
    safe_url,
    scrub,
)
from server.settings import Settings

log = logging.getLogger("wan_video_mcp.media")

Route = Literal["ticket", "binary"]
UPLOAD_ATTEMPTS = 4
# WaveSpeed keeps uploads for 7 days; one day leaves a wide margin for a job that uses the URL.
REUSE_SECONDS = 24 * 3600
_PROVIDER = "wavespeed"


class _NoSuchRoute(Exception):
    """The upload route answered 404 or 405: this deployment does not have it."""


class WaveSpeedUploads:
    """Uploads image bytes to WaveSpeed through whichever documented route answers."""

    def __init__(
        self, settings: Settings, client: httpx.AsyncClient, store: JobStore | None, policy: UrlPolicy
    ) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        self._policy = policy
        self._base = settings.wavespeed_base_url.rstrip("/")
        self._preferred: Route = "ticket"

    def _auth(self) -> dict[str, str]:
        key = self._settings.wavespeed_api_key
        if key is None:
            raise ConfigError(
                "WAVESPEED_API_KEY is not set. Set it in the MCP server's environment (get a key at "
                "wavespeed.ai), or start the server with --sandbox to try it without a key."
            )
        return {"Authorization": f"Bearer {key.get_secret_value()}", "X-Client-Name": "wan-video-mcp"}

    async def upload(self, data: bytes, content_type: str, extension: str) -> str:
        """The ``download_url`` of these bytes at WaveSpeed, uploading them unless done today."""
        digest = hashlib.sha256(data).hexdigest()
        since = time.time() - REUSE_SECONDS
        if self._store is not None:
            known = await self._store.find_upload(digest, self._base, since)
            if known is not None:
                log.info("image %s… already uploaded; reusing it", digest[:12])
                return known
        filename = f"{digest[:16]}.{extension}"
        url = await self._upload(data, content_type, filename)
        if self._store is not None:
            await self._store.remember_upload(digest, self._base, url, time.time())
        return url

    async def _upload(self, data: bytes, content_type: str, filename: str) -> str:
        other: Route = "binary" if self._preferred == "ticket" else "ticket"
        missing: _NoSuchRoute | None = None
        for route in (self._preferred, other):
            try:
                if route == "ticket":
                    url = await self._ticket(data, content_type, filename)
                else:
                    url = await self._binary(data, content_type, filename)
            except _NoSuchRoute as exc:
                log.info("WaveSpeed upload route '%s' is missing (%s)", route, exc)
                missing = exc
                continue
            self._preferred = route
            return url
        raise Rejected(
            f"WaveSpeed has neither documented upload route ({missing}); pass the image as an https:// "
            "URL instead. Nothing was charged.",
            provider=_PROVIDER,
            status=404,
        )

    async def _ticket(self, data: bytes, content_type: str, filename: str) -> str:
        response = await self._send(
            "POST",
            f"{self._base}/api/v3/media/uploads",
            what="start an image upload",
            route=True,
            headers=self._auth(),
            json={"filename": filename, "size": len(data), "content_type": content_type},
        )
        payload = _envelope(read_json(response, _PROVIDER, "the upload request"), "start an image upload")
        ticket = as_dict(payload.get("upload")) or {}
        method = str(ticket.get("method") or "PUT").upper()
        put_url = ticket.get("url")
        headers = {str(k): str(v) for k, v in (as_dict(ticket.get("headers")) or {}).items()}
        if method not in ("PUT", "POST") or not isinstance(put_url, str) or not put_url:
            raise Unavailable("WaveSpeed's upload ticket had no usable upload URL.", provider=_PROVIDER)
        try:
            target = await self._policy.check(put_url)
        except FetchError as exc:
            raise Unavailable(f"WaveSpeed's upload URL was refused: {exc}", provider=_PROVIDER) from exc
        # The URL is pre-signed: the provider's key must not travel with the bytes.
        stored = await self._send(
            method,
            target.url,
            what="store the uploaded image",
            headers={**headers, **target.headers},
            extensions=target.extensions,
            content=data,
        )
        if not stored.is_success:
            raise Unavailable(
                f"WaveSpeed's upload URL answered {stored.status_code}; nothing was charged.",
                provider=_PROVIDER,
            )
        return _download_url(payload)

    async def _binary(self, data: bytes, content_type: str, filename: str) -> str:
        response = await self._send(
            "POST",
            f"{self._base}/api/v3/media/upload/binary",
            what="upload the image",
            route=True,
            headers=self._auth(),
            files={"file": (filename, data, content_type)},
        )
        return _download_url(_envelope(read_json(response, _PROVIDER, "the upload"), "upload the image"))

    async def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        what: str,
        headers: dict[str, str],
        route: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one upload request, retried on 429/5xx/transport errors; errors mapped to the tree.

        ``route``: a 404/405 means the route itself is missing (``_NoSuchRoute``).
        """
        last: ProviderError | None = None
        policy = self._settings.poll
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            retry_after: float | None = None
            try:
                response = await self._client.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                last = Unavailable(
                    f"Could not reach WaveSpeed to {what} ({type(exc).__name__}); nothing was charged.",
                    provider=_PROVIDER,
                )
                last.__cause__ = exc
            else:
                if route and response.status_code in (404, 405):
                    raise _NoSuchRoute(f"{response.status_code} from {safe_url(str(url))}")
                if response.status_code not in RETRYABLE_STATUS or attempt == UPLOAD_ATTEMPTS:
                    raise_for_status(response, _PROVIDER, what)
                    return response
                retry_after = retry_after_seconds(response)
                try:
                    raise_for_status(response, _PROVIDER, what)
                except ProviderError as exc:
                    last = exc
            if attempt < UPLOAD_ATTEMPTS:
                delay = backoff(attempt, policy, retry_after)
                log.info("retrying %s %s in %.2fs after: %s", method, safe_url(str(url)), delay, last)
                await anyio.sleep(delay)
        assert last is not None
        raise last


def _envelope(payload: dict[str, Any], what: str) -> dict[str, Any]:
    # WaveSpeed can answer HTTP 200 with an error code in the body.
    code = payload.get("code")
    if isinstance(code, int) and code != 200:
        message = payload.get("message")
        said = scrub(message) if isinstance(message, str) else str(code)
        raise Rejected(f"WaveSpeed refused to {what} (code {code}: {said}).", provider=_PROVIDER, status=code)
    return as_dict(payload.get("data", payload)) or {}


def _download_url(data: dict[str, Any]) -> str:
    url = data.get("download_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise Unavailable("WaveSpeed's upload answer had no download_url.", provider=_PROVIDER)
    return url
