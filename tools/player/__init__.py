"""The inline video player, an MCP App (``io.modelcontextprotocol/ui``).

``player.html`` (package data, plain HTML and JavaScript, no network) is served as one ``ui://``
resource. Every generate tool and ``get_result`` name it in ``_meta.ui.resourceUri``; an Apps host
shows it beside the call, and it follows the job itself through the host (``tools/call`` of
``get_result``), then fetches the MP4 in chunks with ``read_video_chunk`` into a ``data:`` URI,
the one way to play a video under the spec's default CSP (``media-src 'self' data:``).

For a client that negotiated Apps, those tools' results also carry a small ``player`` record (the
progress as a fraction, when to ask again, the saved video's size); every other client gets the
results unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import anyio.to_thread
from mcp.server.apps import Apps, client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from server.core_handle import CoreHandle
from server.errors import JobNotFound
from tools import core_of

if TYPE_CHECKING:
    from server.core import Core
    from server.jobs.store import Job

PLAYER_URI = "ui://wan-video/player.html"
# At most 512 KiB and a multiple of 3, so each chunk's base64 has no padding and the pieces join
# straight into one data: URI; 699,048 base64 characters keep a result under 1 MB.
CHUNK_BYTES = 3 * 174_762
# When the server is not the one following a job (another process, or none yet), ask this often.
DEFAULT_POLL_SECONDS = 3.0
# A poll of ours lands just after the server's own, so it sees that poll's answer.
POLL_MARGIN_SECONDS = 0.3

PlayerContext = Context[CoreHandle, Any]


def player_html() -> str:
    """The player document, exactly as the ``ui://`` resource serves it."""
    return files("tools.player").joinpath("player.html").read_text("utf-8")


def player_extension() -> Apps:
    """The Apps extension, which serves the player resource and advertises the capability."""
    apps = Apps()
    apps.add_html_resource(
        PLAYER_URI,
        player_html(),
        name="player",
        title="Video player",
        description="Plays a job's video inline, follows a running job, offers a new take.",
        prefers_border=True,
    )
    return apps


# Written by hand, as short as it can be: every tool's schema counts against the tools/list size.
CHUNK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"job_id": {"type": "string"}, "offset": {"type": "integer", "minimum": 0}},
    "required": ["job_id"],
}


def chunk_tool() -> Tool:
    """``read_video_chunk``, for the player only (``visibility: ["app"]``); non-Apps clients list it
    too, so its description tells a model what to use instead."""
    tool = Tool.from_function(
        read_video_chunk,
        name="read_video_chunk",
        description="Video player app only: a job's saved MP4 in base64 chunks. Agents: use local_path.",
        annotations=ToolAnnotations(read_only_hint=True),
        meta={"ui": {"resourceUri": PLAYER_URI, "visibility": ["app"]}},
    )
    tool.parameters = CHUNK_SCHEMA  # the signature's pydantic model still validates the arguments
    return tool


async def read_video_chunk(
    job_id: Annotated[str, Field(min_length=1, max_length=200)],
    ctx: PlayerContext,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> CallToolResult:
    """One chunk of a job's saved MP4: ``{job_id, offset, count, total, has_more, b64}``, at most
    ``CHUNK_BYTES`` from ``offset``."""
    core = await core_of(ctx)
    try:
        job = await core.store.get(job_id)
    except JobNotFound as exc:
        raise ToolError(str(exc)) from exc
    if job.status != "completed" or not job.local_path:
        raise ToolError(
            f"Job {job_id} has no saved video (status {job.status}); "
            + ("its video_url is the provider's copy." if job.video_url else "wait until it completes.")
        )
    total, data = await anyio.to_thread.run_sync(_read_chunk, Path(job.local_path), offset, job_id)
    record = {
        "job_id": job_id,
        "offset": offset,
        "count": len(data),
        "total": total,
        "has_more": offset + len(data) < total,
        "mime_type": "video/mp4",
        "b64": base64.b64encode(data).decode("ascii"),
    }
    text = f"Bytes {offset}-{offset + len(data)} of {total} of job {job_id}'s MP4 (base64 in b64)."
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=record)


def _read_chunk(path: Path, offset: int, job_id: str) -> tuple[int, bytes]:
    try:
        with path.open("rb") as file:
            total = path.stat().st_size
            if offset > total:
                raise ToolError(f"offset {offset} is past the end of job {job_id}'s video ({total} bytes).")
            file.seek(offset)
            return total, file.read(CHUNK_BYTES)
    except OSError as exc:
        raise ToolError(f"The saved video of job {job_id} cannot be read ({exc.strerror}).") from exc


def player_facts(job: Job, core: Core) -> dict[str, Any]:
    """What the player needs beyond the job record: a progress fraction and its polling pace."""
    from server.jobs.runner import describe_progress

    now = time.time()
    fraction, _ = describe_progress(job, core.models.get(job.model), now)
    facts: dict[str, Any] = {"progress": round(fraction, 3)}
    if job.is_live or job.status == "unconfirmed":
        planned = core.runner.next_poll_at(job.id)
        wait = DEFAULT_POLL_SECONDS if planned is None else max(planned - now, 0.0) + POLL_MARGIN_SECONDS
        facts["poll_after_seconds"] = round(wait, 2)
    if job.status == "completed" and job.local_path:
        with contextlib.suppress(OSError):  # gone since it was saved: the player says so when it asks
            facts["video_bytes"] = Path(job.local_path).stat().st_size
    threshold = core.settings.spend.confirm_above_usd
    if threshold is not None:
        facts["confirm_above_usd"] = threshold
    return facts


ToolFn = Callable[..., Awaitable[Any]]


def _with_player_facts(fn: ToolFn, context_kwarg: str) -> ToolFn:
    @functools.wraps(fn)
    async def run(**kwargs: Any) -> Any:
        result = await fn(**kwargs)
        ctx = cast("PlayerContext | None", kwargs.get(context_kwarg))
        record = result.structured_content if isinstance(result, CallToolResult) else None
        if ctx is not None and record is not None and client_supports_apps(ctx):
            core = await core_of(ctx)
            job_id = record.get("job_id")
            if isinstance(job_id, str):
                try:
                    job = await core.store.get(job_id)
                except JobNotFound:
                    return result
                record["player"] = player_facts(job, core)
        return result

    return run


def attach_player(tools: list[Tool]) -> list[Tool]:
    """Point every generate tool and ``get_result`` at the player (in place), and add the player's
    ``read_video_chunk``; returns ``tools``."""
    for tool in tools:
        if tool.name == "get_result" or tool.name.endswith("_generate_video"):
            tool.meta = {**(tool.meta or {}), "ui": {"resourceUri": PLAYER_URI}}
            if tool.context_kwarg is not None:
                tool.fn = _with_player_facts(tool.fn, tool.context_kwarg)
    tools.append(chunk_tool())
    return tools


__all__ = ["CHUNK_BYTES", "PLAYER_URI", "attach_player", "player_extension", "player_html"]
