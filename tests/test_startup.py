"""Start-up stays cheap: image, video and emulator code load on first use, not at start, and the
HTTP transport (its TLS context) is made on the first provider request."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import httpx
import pytest

from server.providers.deferred import DeferredTransport
from tests.mcp_helpers import serve_asgi

PROBE = """
import sys
from server.app import build_server
from server.settings import Settings
build_server(Settings(home=sys.argv[1]))
print(",".join(m for m in ("PIL", "av", "server.sandbox") if m in sys.modules))
"""


def test_building_the_server_loads_no_image_video_or_emulator_code() -> None:
    command = [sys.executable, "-c", PROBE, "/nonexistent-home"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


@pytest.mark.anyio
async def test_the_http_transport_is_made_on_the_first_request_not_at_start() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"pong"})

    transport = DeferredTransport()
    async with serve_asgi(app) as base, httpx.AsyncClient(transport=transport) as client:
        assert not transport.started
        with anyio.fail_after(10):
            answer = await client.get(f"{base}/ping")
        assert (answer.status_code, answer.text) == (200, "pong")
        assert transport.started
