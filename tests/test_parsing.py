"""Provider payload -> normalised status: every documented shape and spelling, in one table each."""

from __future__ import annotations

from typing import Any

import pytest

from server.providers import ProviderStatus
from server.providers.http import epoch_seconds
from server.providers.vtrix import parse_task, task_id
from server.providers.wavespeed import parse_prediction

CDN = "https://d11ewybssaphwx.cloudfront.net/output/a.mp4"


def ws(**data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": {"id": "p1", "outputs": [], "error": "", **data}}


WAVESPEED: list[tuple[dict[str, Any], ProviderStatus]] = [
    (ws(status="created"), ProviderStatus("queued", "created")),
    (
        ws(status="created", created_at="2026-01-30T08:15:44.021Z"),
        ProviderStatus("queued", "created", created_at=1769760944.021),
    ),
    (ws(status="processing"), ProviderStatus("running", "processing")),
    (
        ws(status="completed", outputs=[CDN], timings={"inference": 31234}),
        ProviderStatus("completed", "completed", video_url=CDN, inference_ms=31234),
    ),
    (
        ws(status="failed", error="CUDA out of memory"),
        ProviderStatus("failed", "failed", error="CUDA out of memory"),
    ),
    (ws(status="failed"), ProviderStatus("failed", "failed", error="the provider reported status 'failed'")),
    (
        ws(status="cancelled"),
        ProviderStatus("failed", "cancelled", error="the provider reported status 'cancelled'"),
    ),
    (
        ws(status="timeout"),
        ProviderStatus("failed", "timeout", error="the provider reported status 'timeout'"),
    ),
    (
        ws(status="completed", outputs=[], has_nsfw_contents=[True]),
        ProviderStatus("failed", "completed", error="the provider's safety checker flagged the output"),
    ),
    (ws(status="something-new"), ProviderStatus("running", "something-new")),
    (
        {"id": "p1", "status": "completed", "outputs": [CDN]},
        ProviderStatus("completed", "completed", video_url=CDN),
    ),
]


@pytest.mark.parametrize(("payload", "expected"), WAVESPEED)
def test_wavespeed_prediction(payload: dict[str, Any], expected: ProviderStatus) -> None:
    assert parse_prediction(payload) == expected


def vx_done(url: str = CDN) -> dict[str, Any]:
    return {
        "id": "t1",
        "status": "completed",
        "output": [{"content": [{"type": "video", "url": url, "duration": 5}], "jobId": "t1"}],
        "usage": {"cost": "0.07", "discount": 0},
    }


VTRIX: list[tuple[dict[str, Any], ProviderStatus]] = [
    ({"id": "t1", "status": "pending"}, ProviderStatus("queued", "pending")),
    (
        {"id": "t1", "status": "in_queue", "created_at": 1769757744021},  # the doc's example, in ms
        ProviderStatus("queued", "in_queue", created_at=1769757744.021),
    ),
    ({"id": "t1", "status": "in_queue"}, ProviderStatus("queued", "in_queue")),
    (
        {"id": "t1", "status": "in_progress", "progress": 0.45},
        ProviderStatus("running", "in_progress", progress=0.45),
    ),
    (
        {"id": "t1", "status": "processing", "progress": 45},
        ProviderStatus("running", "processing", progress=0.45),
    ),
    (vx_done(), ProviderStatus("completed", "completed", video_url=CDN, cost_usd=0.07)),
    (
        {"data": {**vx_done(), "status": "success"}, "status": {"code": 200, "message": "success"}},
        ProviderStatus("completed", "success", video_url=CDN, cost_usd=0.07),
    ),
    (
        {"data": {"id": "t1", "status": "success", "output": [{"type": "video", "url": CDN, "jobId": "j"}]}},
        ProviderStatus("completed", "success", video_url=CDN),
    ),
    (
        {
            "id": "t1",
            "status": "failed",
            "error": {"code": "002014001", "message": "Video generation failed"},
        },
        ProviderStatus("failed", "failed", error="Video generation failed (code 002014001)"),
    ),
    (
        {"id": "t1", "status": "failed", "error": "bad image"},
        ProviderStatus("failed", "failed", error="bad image"),
    ),
    (
        {"id": "t1", "status": "completed", "output": []},
        ProviderStatus("failed", "completed", error="the job finished without a video"),
    ),
]


@pytest.mark.parametrize(("payload", "expected"), VTRIX)
def test_vtrix_task(payload: dict[str, Any], expected: ProviderStatus) -> None:
    assert parse_task(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"id": "t9", "status": "pending"}, "t9"),
        ({"task_id": "t9"}, "t9"),
        ({"data": {"id": "t9", "status": "in_queue"}, "status": {"code": 200}}, "t9"),
        ({"status": {"code": 200}}, None),
    ],
)
def test_vtrix_task_id_in_every_documented_shape(payload: dict[str, Any], expected: str | None) -> None:
    assert task_id(payload) == expected


def test_provider_error_text_never_carries_a_signature() -> None:
    signed = CDN + "?Expires=1&Signature=abcdef&Key-Pair-Id=K"
    status = parse_prediction(ws(status="failed", error=f"could not fetch {signed} with Bearer sk-live-123"))
    assert status.error is not None
    assert "abcdef" not in status.error
    assert "sk-live-123" not in status.error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-30T08:15:44.021Z", 1769760944.021),
        ("2026-01-30T16:15:44.021+08:00", 1769760944.021),
        ("2026-01-30T08:15:44", 1769760944.0),  # no zone: UTC
        ("2026-01-30T08:15:44.021000999Z", 1769760944.021),  # nanoseconds, cut to micro
        ("2026-01-30 08:15:44Z", 1769760944.0),
        (1769757744021, 1769757744.021),  # milliseconds
        (1769757744, 1769757744.0),  # seconds
        (1769757744.5, 1769757744.5),
        ("yesterday", None),
        ("", None),
        (True, None),
        (-5, None),
        (float("nan"), None),
        (None, None),
        ({"seconds": 1}, None),
    ],
)
def test_vendor_timestamps_in_every_spelling(value: object, expected: float | None) -> None:
    found = epoch_seconds(value)
    assert found == (pytest.approx(expected) if expected is not None else None)
