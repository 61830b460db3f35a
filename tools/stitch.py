"""``stitch_videos``: completed jobs joined, in order, into one MP4 on this machine (free)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent, ToolAnnotations

from server.errors import InvalidRequest, WanMcpError
from server.settings import MAX_CROSSFADE_SECONDS, MAX_PARTS
from tools import AppContext, core_of, raw_tool

if TYPE_CHECKING:
    from server.media.stitch import Stitched

STITCH_URI = "wan-video://stitches/{stitch_id}"
# A contact sheet is at most 100 KB; a poster a few tens.
_MAX_IMAGE_BYTES = 512 * 1024


def stitch_uri(stitch_id: str) -> str:
    return STITCH_URI.format(stitch_id=stitch_id)


def stitch_tool() -> Tool:
    """``stitch_videos``."""

    async def stitch_videos(arguments: dict[str, Any], ctx: AppContext) -> CallToolResult:
        from server.media.stitch import stitch_jobs
        from server.media.video import VideoError

        core = await core_of(ctx)
        try:
            unknown = set(arguments) - {"job_ids", "crossfade_seconds"}
            if unknown:
                raise InvalidRequest(
                    f"Unknown parameter(s) {', '.join(sorted(unknown))}; use job_ids, crossfade_seconds."
                )
            stitched = await stitch_jobs(
                core.store,
                core.settings.videos_dir,
                arguments.get("job_ids"),
                arguments.get("crossfade_seconds", 0),
            )
        except WanMcpError as exc:
            raise ToolError(str(exc)) from exc
        except VideoError as exc:
            raise ToolError(f"The clips could not be stitched: {exc}. Nothing was saved.") from exc
        return await stitch_result(stitched)

    schema = {
        "type": "object",
        "properties": {
            "job_ids": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": MAX_PARTS},
            "crossfade_seconds": {"type": "number", "minimum": 0, "maximum": int(MAX_CROSSFADE_SECONDS)},
        },
        # Open, like the estimate tools' (tools/list is capped): unknown arguments are refused by name.
        "required": ["job_ids"],
    }
    return raw_tool(
        stitch_videos,
        name="stitch_videos",
        title=None,
        description="Joins completed jobs' videos, in order, into one MP4. Free.",
        schema=schema,
        annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False),
        shape="plain",
    )


async def stitch_result(stitched: Stitched) -> CallToolResult:
    """The stitch as structured content, a line of text, a resource link and its contact sheet."""
    record = dict(stitched.record)
    video = record["video"]
    record.update(local_path=str(stitched.video), uri=stitch_uri(stitched.stitch_id), reused=stitched.reused)
    again = " (made earlier from the same parts; returned as it is)" if stitched.reused else ""
    text = (
        f"Stitched {len(record['parts'])} clips into {stitched.video}{again}: {video['duration_seconds']} s, "
        f"{video['frames']} frames, {video['width']}x{video['height']}, {record['mode']}. Local work: no "
        "provider was called and nothing was charged ($0.00)."
    )
    content: list[ContentBlock] = [
        TextContent(type="text", text=text),
        ResourceLink(
            type="resource_link",
            uri=stitch_uri(stitched.stitch_id),
            name=stitched.video.name,
            title=f"Stitched video {stitched.stitch_id}",
            description=f"The MP4, as saved at {stitched.video}.",
            mime_type="video/mp4",
            size=video["bytes"],
        ),
    ]
    image = await anyio.to_thread.run_sync(_preview, stitched)
    if image is not None:
        content.append(ImageContent(type="image", data=image, mime_type="image/jpeg"))
    return CallToolResult(content=content, structured_content=record)


def _preview(stitched: Stitched) -> str | None:
    from server.media.frames import sheet_path

    for path in (sheet_path(stitched.video), stitched.poster):
        try:
            if path.is_file() and path.stat().st_size <= _MAX_IMAGE_BYTES:
                return base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            continue
    return None
