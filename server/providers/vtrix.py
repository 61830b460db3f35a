"""Vtrix ``wan22_i2v_flash`` (seed 004; providers.md section 2).

Vtrix's documents disagree on envelopes and status spellings, so every documented form is read:
top-level task objects or ``{data, status}`` envelopes, ``id`` or ``task_id``, and the statuses
``pending``/``in_queue``/``in_progress``/``processing`` then ``completed``/``success``/``failed``.
The submit body follows the model's own doc page (``input`` + ``parameters`` objects); the CLI's
``input: [{params: {...}}]`` shape is one switch away (``BODY_STYLE``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from server.catalog import ModelSpec, ProviderName
from server.errors import ConfigError, Rejected, Unavailable
from server.providers import JobState, ProviderStatus, Submitted
from server.providers.http import (
    MaybeSent,
    as_dict,
    as_list,
    epoch_seconds,
    scrub,
    send_idempotent,
    send_submit,
)
from server.settings import Settings

BODY_STYLE: Literal["doc", "cli"] = "doc"

_STATES: dict[str, JobState] = {
    "pending": "queued",
    "in_queue": "queued",
    "queued": "queued",
    "created": "queued",
    "submitted": "queued",
    "in_progress": "running",
    "processing": "running",
    "running": "running",
    "completed": "completed",
    "success": "completed",
    "succeeded": "completed",
    "done": "completed",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "cancelled": "failed",
    "canceled": "failed",
    "timeout": "failed",
}


def _unwrap(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    data = as_dict(payload.get("data"))
    if data is not None and ("id" in data or "task_id" in data or "status" in data):
        return data
    return payload


def _video_url(output: object) -> str | None:
    for item in as_list(output):
        entry = as_dict(item)
        if entry is None:
            continue
        blocks = as_list(entry.get("content")) if "content" in entry else [entry]
        for block in map(as_dict, blocks):
            if block is None:
                continue
            url = block.get("url")
            if isinstance(url, str) and url and block.get("type", "video") == "video":
                return url
    return None


def _error_text(error: object) -> str | None:
    if isinstance(error, str) and error.strip():
        return scrub(error)
    detail = as_dict(error)
    if detail is not None:
        message = detail.get("message") or detail.get("error_message")
        code = detail.get("code")
        if isinstance(message, str) and message.strip():
            return scrub(f"{message} (code {code})" if code else message)
        if code:
            return f"error code {scrub(str(code), 40)}"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def task_id(payload: Mapping[str, Any]) -> str | None:
    """The task id of a submit answer, in any documented shape."""
    task = _unwrap(payload)
    for key in ("id", "task_id"):
        value = task.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def parse_task(payload: Mapping[str, Any]) -> ProviderStatus:
    """A task payload, in any documented shape, as a status."""
    task = _unwrap(payload)
    raw = str(task.get("status", "")).strip().lower()
    state = _STATES.get(raw, "running")
    progress = _number(task.get("progress"))
    if progress is not None and progress > 1:
        progress /= 100  # some pages show percentages
    cost = _number((as_dict(task.get("usage")) or {}).get("cost"))
    video = _video_url(task.get("output"))
    reason = _error_text(task.get("error"))
    if state == "completed" and video is None:
        state, reason = "failed", reason or "the job finished without a video"
    if state == "failed" and not reason:
        reason = f"the provider reported status '{raw}'"
    return ProviderStatus(
        state=state,
        raw_status=raw,
        progress=min(max(progress, 0.0), 1.0) if progress is not None else None,
        video_url=video if state == "completed" else None,
        error=reason if state == "failed" else None,
        cost_usd=cost if state == "completed" else None,
        created_at=epoch_seconds(task.get("created_at")),
    )


class VtrixProvider:
    """Vtrix: ``POST /model/v1/generation``, ``GET /model/v1/generation/task/{id}``."""

    name: ProviderName = "vtrix"

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._base = settings.vtrix_base_url.rstrip("/")

    def require_key(self) -> None:
        if self._settings.vtrix_api_key is None:
            raise ConfigError(
                "VTRIX_API_KEY is not set. Set it in the MCP server's environment (get a key at vtrix.ai), "
                "or start the server with --sandbox to try it without a key."
            )

    def _headers(self) -> dict[str, str]:
        self.require_key()
        assert self._settings.vtrix_api_key is not None
        return {"Authorization": f"Bearer {self._settings.vtrix_api_key.get_secret_value()}"}

    async def submit(self, spec: ModelSpec, body: dict[str, Any], *, webhook: bool = False) -> Submitted:
        if BODY_STYLE == "cli":
            params = {k: v for k, v in body.items() if k != "model"}
            body = {"model": body.get("model", spec.model_id), "input": [{"params": params}]}
        payload = await send_submit(
            self._client,
            f"{self._base}/model/v1/generation",
            provider=self.name,
            policy=self._settings.poll,
            headers=self._headers(),
            json_body=body,
        )
        job_id = task_id(payload)
        if job_id is None:
            raise MaybeSent("Vtrix accepted the submit but its answer had no task id.", provider=self.name)
        return Submitted(provider_job_id=job_id, status=parse_task(payload))

    async def poll(self, provider_job_id: str) -> ProviderStatus:
        payload = await send_idempotent(
            self._client,
            "GET",
            f"{self._base}/model/v1/generation/task/{provider_job_id}",
            provider=self.name,
            what="report the job's status",
            policy=self._settings.poll,
            headers=self._headers(),
        )
        if "status" not in _unwrap(payload):
            raise Unavailable("Vtrix answered the status request without a status.", provider=self.name)
        return parse_task(payload)

    async def find_submissions(self, spec: ModelSpec, after: float, before: float) -> list[str] | None:
        return None  # Vtrix documents no task listing.

    async def quote(self, spec: ModelSpec, body: dict[str, Any]) -> float | None:
        return None  # Vtrix documents no price endpoint.

    async def check_key(self) -> str:
        # Vtrix documents no balance or account call; a status read of a task id that cannot
        # exist costs nothing and tells a refused key (401/403) from an accepted one (404).
        with contextlib.suppress(Rejected):
            await self.poll("wan-video-mcp-key-check")
        return "key accepted"

    async def webhook_secret(self) -> str | None:
        # Vtrix documents no callbacks: its jobs are polled.
        return None
