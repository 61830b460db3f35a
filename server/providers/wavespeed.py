"""WaveSpeed AI, API v3 (seeds 000-003; providers.md section 1)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from server.catalog import ModelSpec, ProviderName
from server.errors import ConfigError, Rejected, Unavailable
from server.providers import JobState, ProviderStatus, Submitted
from server.providers.http import (
    POLL_ATTEMPTS,
    MaybeSent,
    as_dict,
    as_list,
    epoch_seconds,
    register_secret,
    scrub,
    send_idempotent,
    send_submit,
)
from server.settings import Settings

_STATES: dict[str, JobState] = {
    "created": "queued",
    "pending": "queued",
    "queued": "queued",
    "processing": "running",
    "running": "running",
    "starting": "running",
    "completed": "completed",
    "succeeded": "completed",
    "failed": "failed",
    "error": "failed",
    # Not in the API docs, but terminal in WaveSpeed's own SDK and MCP server.
    "cancelled": "failed",
    "canceled": "failed",
    "timeout": "failed",
    "deleted": "failed",
}


def parse_prediction(payload: Mapping[str, Any]) -> ProviderStatus:
    """A result payload (``{code, message, data:{...}}``, or the bare ``data``) as a status."""
    data = as_dict(payload.get("data", payload))
    if data is None:
        raise Unavailable("WaveSpeed returned a result without a data object.", provider="wavespeed")
    raw = str(data.get("status", "")).strip().lower()
    state = _STATES.get(raw, "running")
    video = next((o for o in as_list(data.get("outputs")) if isinstance(o, str) and o), None)
    error = data.get("error")
    reason = scrub(error) if isinstance(error, str) and error.strip() else None
    timings = as_dict(data.get("timings")) or {}
    inference = timings.get("inference")
    if state == "completed" and video is None:
        flagged = any(as_list(data.get("has_nsfw_contents")))
        state = "failed"
        reason = reason or (
            "the provider's safety checker flagged the output"
            if flagged
            else "the job finished without a video"
        )
    if state == "failed" and not reason:
        reason = f"the provider reported status '{raw}'"
    return ProviderStatus(
        state=state,
        raw_status=raw,
        video_url=video if state == "completed" else None,
        error=reason if state == "failed" else None,
        inference_ms=int(inference)
        if isinstance(inference, int | float) and not isinstance(inference, bool) and inference > 0
        else None,
        created_at=epoch_seconds(data.get("created_at")),
    )


def _check_envelope(payload: Mapping[str, Any], what: str) -> None:
    # WaveSpeed can answer HTTP 200 with an error code in the body.
    code = payload.get("code")
    if isinstance(code, int) and code != 200:
        message = payload.get("message")
        said = scrub(message) if isinstance(message, str) else str(code)
        raise Rejected(
            f"WaveSpeed refused to {what} (code {code}: {said}).", provider="wavespeed", status=code
        )


class WaveSpeedProvider:
    """WaveSpeed v3: ``POST /api/v3/<model>``, ``GET /api/v3/predictions/{id}/result``."""

    name: ProviderName = "wavespeed"

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._base = settings.wavespeed_base_url.rstrip("/")

    def require_key(self) -> None:
        if self._settings.wavespeed_api_key is None:
            raise ConfigError(
                "WAVESPEED_API_KEY is not set. Set it in the MCP server's environment (get a key at "
                "wavespeed.ai), or start the server with --sandbox to try it without a key."
            )

    def _headers(self) -> dict[str, str]:
        self.require_key()
        assert self._settings.wavespeed_api_key is not None
        return {
            "Authorization": f"Bearer {self._settings.wavespeed_api_key.get_secret_value()}",
            "X-Client-Name": "wan-video-mcp",
        }

    async def _call(
        self, method: str, path: str, what: str, *, json_body: Any = None, attempts: int = POLL_ATTEMPTS
    ) -> dict[str, Any]:
        """A request that changes nothing at WaveSpeed (retried), its envelope checked."""
        payload = await send_idempotent(
            self._client,
            method,
            f"{self._base}{path}",
            provider=self.name,
            what=what,
            policy=self._settings.poll,
            headers=self._headers(),
            json_body=json_body,
            attempts=attempts,
        )
        _check_envelope(payload, what)
        return payload

    async def submit(self, spec: ModelSpec, body: dict[str, Any], *, webhook: bool = False) -> Submitted:
        url = f"{self._base}/api/v3/{spec.model_id}"
        if webhook and self._settings.webhook_url is not None:
            # Documented as a query parameter (providers.md section 1.6), not a body field.
            url = str(httpx.URL(url, params={"webhook": self._settings.webhook_url}))
        payload = await send_submit(
            self._client,
            url,
            provider=self.name,
            policy=self._settings.poll,
            headers=self._headers(),
            json_body=body,
        )
        try:
            _check_envelope(payload, "accept the job")
        except Rejected as exc:
            if exc.status is not None and exc.status >= 500:
                raise MaybeSent(str(exc), provider=self.name, status=exc.status) from exc
            raise
        data = as_dict(payload.get("data")) or {}
        job_id = data.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise MaybeSent(
                "WaveSpeed accepted the submit but its answer had no task id.", provider=self.name
            )
        return Submitted(provider_job_id=job_id, status=parse_prediction(payload))

    async def poll(self, provider_job_id: str) -> ProviderStatus:
        payload = await self._call(
            "GET", f"/api/v3/predictions/{provider_job_id}/result", "report the job's status"
        )
        return parse_prediction(payload)

    async def find_submissions(self, spec: ModelSpec, after: float, before: float) -> list[str] | None:
        # The prediction history covers the last 7 days, newest first, 100 items a page.
        payload = await self._call(
            "POST",
            "/api/v3/predictions",
            "list recent predictions",
            json_body={
                "page": 1,
                "page_size": 100,
                "model": spec.model_id,
                "created_after": _iso(after),
                "created_before": _iso(before),
            },
        )
        items = as_list((as_dict(payload.get("data")) or {}).get("items"))
        found: list[str] = []
        for item in map(as_dict, items):
            if item is None:
                continue
            job_id, model = item.get("id"), item.get("model")
            if isinstance(job_id, str) and job_id and model in (None, spec.model_id):
                found.append(job_id)
        return found

    async def quote(self, spec: ModelSpec, body: dict[str, Any]) -> float | None:
        payload = await self._call(
            "POST",
            "/api/v3/model/price",
            "quote a price",
            json_body={"model_id": spec.model_id, "inputs": body},
            attempts=2,
        )
        data = as_dict(payload.get("data", payload)) or {}
        for key in ("discounted_price", "price"):
            value = data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
        return None

    async def check_key(self) -> str:
        payload = await self._call("GET", "/api/v3/balance", "report the balance", attempts=2)
        balance = (as_dict(payload.get("data", payload)) or {}).get("balance")
        return f"key accepted; balance ${balance:.2f}" if isinstance(balance, int | float) else "key accepted"

    async def webhook_secret(self) -> str | None:
        payload = await self._call("GET", "/api/v3/webhook/secret", "give the webhook secret", attempts=2)
        data = as_dict(payload.get("data", payload)) or {}
        secret = data.get("secret")
        if not isinstance(secret, str) or not secret.strip():
            raise Unavailable("WaveSpeed's webhook secret answer had no secret.", provider=self.name)
        register_secret(secret.strip())
        return secret.strip()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
