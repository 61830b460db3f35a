"""Helpers to drive the server through real MCP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from bench.common import serve_http, stdio_params
from tests.conftest import VX_KEY, WS_KEY

ERAS = ("auto", "legacy")
CAT_URL = "https://example.com/cat.png"


def stdio_server(home: Path, base_url: str, **env: str) -> StdioServerParameters:
    """The console command's module run over stdio, pointed at ``base_url`` for both vendors."""
    params = stdio_params(home, base_url, log_level="WARNING")
    keys = {"WAVESPEED_API_KEY": WS_KEY, "VTRIX_API_KEY": VX_KEY}
    return params.model_copy(update={"env": {**(params.env or {}), **keys, **env}})


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
    """Run an ASGI app under uvicorn on a loopback port in this event loop; yields its base URL."""
    async with serve_http(app) as url:
        yield url.removesuffix("/mcp")
