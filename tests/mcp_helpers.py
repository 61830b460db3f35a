"""Helpers to drive the server through real MCP clients."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from tests.conftest import VX_KEY, WS_KEY

ERAS = ("auto", "legacy")
CAT_URL = "https://example.com/cat.png"


def stdio_server(home: Path, base_url: str, **env: str) -> StdioServerParameters:
    """The console command's module run over stdio, pointed at ``base_url`` for both vendors."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--log-level", "WARNING"],
        env={
            "WAVESPEED_API_KEY": WS_KEY,
            "VTRIX_API_KEY": VX_KEY,
            "WAVESPEED_BASE_URL": base_url,
            "VTRIX_BASE_URL": base_url,
            "WAN_MCP_HOME": str(home),
            "WAN_MCP_ALLOWED_DIRS": str(home),
            "WAN_MCP_POLL_INTERVAL": "0.02",
            **env,
        },
    )


def minimal_arguments(slug: str, **extra: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"image": CAT_URL, "prompt": "a cat turns its head, slow dolly-in", **extra}
    return arguments


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, text_of(result)
    return dict(result.structured_content)


@dataclass
class ProgressLog:
    """Collects progress notifications for one call."""

    events: list[tuple[float, float | None, str | None]] = field(
        default_factory=list[tuple[float, float | None, str | None]]
    )

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.events.append((progress, total, message))

    @property
    def messages(self) -> list[str]:
        return [m or "" for _, _, m in self.events]


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on a loopback port in this event loop; yields its base URL.

    The socket is bound and listening before uvicorn starts, so clients can connect at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
