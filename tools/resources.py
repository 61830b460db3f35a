"""Resources: a job's JSON record, its saved MP4, the list of recent jobs; frames and contact
sheets of saved videos, and stitched videos.

Media code is imported where it is used: registering the resources loads none of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from server.errors import JobNotFound, WanMcpError
from tools import AppContext, core_of
from tools.results import (
    CONTACT_SHEET_URI,
    FRAME_AT_URI,
    FRAME_FIRST_URI,
    FRAME_LAST_URI,
    JOB_URI,
    JOB_VIDEO_URI,
    JOBS_URI,
    job_record,
)
from tools.stitch import STITCH_URI

if TYPE_CHECKING:
    from server.media.frames import FrameRef

# Resource contents travel as base64 inside one JSON-RPC message; past this, use local_path.
MAX_VIDEO_RESOURCE_BYTES = 64 * 1024 * 1024


def register_resources(server: MCPServer) -> None:
    """Add the job and video templates and the recent-jobs listing to ``server``."""

    @server.resource(
        JOB_URI,
        name="job",
        title="Video job record",
        description="One job's parameters, status, video URL and local file, as JSON.",
        mime_type="application/json",
    )
    async def job_resource(job_id: str, ctx: AppContext) -> str:  # pyright: ignore[reportUnusedFunction]
        core = await core_of(ctx, ResourceError)
        try:
            job = await core.store.get(job_id)
        except JobNotFound as exc:
            raise ResourceError(str(exc)) from exc
        return json.dumps(job_record(job, core), indent=2)

    @server.resource(
        JOB_VIDEO_URI,
        name="job_video",
        title="Video of a job",
        description="A completed job's MP4, as saved in the output folder.",
        mime_type="video/mp4",
    )
    async def video_resource(job_id: str, ctx: AppContext) -> bytes:  # pyright: ignore[reportUnusedFunction]
        core = await core_of(ctx, ResourceError)
        try:
            job = await core.store.get(job_id)
        except JobNotFound as exc:
            raise ResourceError(str(exc)) from exc
        if job.status != "completed" or not job.local_path:
            raise ResourceError(
                f"Job {job_id} has no saved video (status {job.status}); "
                + ("use its video_url." if job.video_url else "call get_result until it completes.")
            )
        return await anyio.to_thread.run_sync(_read_video, Path(job.local_path), job_id)

    @server.resource(
        JOBS_URI + "{?limit}",
        name="jobs",
        title="Recent video jobs",
        description="The most recent jobs (default 20, at most 200), newest first, as JSON.",
        mime_type="application/json",
    )
    async def jobs_resource(ctx: AppContext, limit: int = 20) -> str:  # pyright: ignore[reportUnusedFunction]
        core = await core_of(ctx, ResourceError)
        jobs = await core.store.recent(max(1, min(limit, 200)))
        return json.dumps([job_record(job, core) for job in jobs], indent=2)

    register_media_resources(server)


def register_media_resources(server: MCPServer) -> None:
    """Frames and contact sheets of saved videos, and stitched videos."""

    async def frame(job_id: str, ref: FrameRef, ctx: AppContext) -> bytes:
        from server.media.frames import extract_frame, saved_video
        from server.media.video import VideoError

        store = (await core_of(ctx, ResourceError)).store
        try:
            video = await saved_video(store, job_id)
            found = await anyio.to_thread.run_sync(extract_frame, video, ref)
        except (WanMcpError, VideoError) as exc:
            raise ResourceError(f"No frame: {exc}") from exc
        return found.png

    @server.resource(
        FRAME_FIRST_URI,
        name="job_first_frame",
        title="First frame of a job's video",
        description="PNG. Also accepted as image/last_image by every generate tool.",
        mime_type="image/png",
    )
    async def first_frame(job_id: str, ctx: AppContext) -> bytes:  # pyright: ignore[reportUnusedFunction]
        from server.media.frames import FrameRef

        return await frame(job_id, FrameRef(job_id, "first"), ctx)

    @server.resource(
        FRAME_LAST_URI,
        name="job_last_frame",
        title="Last frame of a job's video",
        description="PNG. Pass this URI as image to continue the shot.",
        mime_type="image/png",
    )
    async def last_frame(job_id: str, ctx: AppContext) -> bytes:  # pyright: ignore[reportUnusedFunction]
        from server.media.frames import FrameRef

        return await frame(job_id, FrameRef(job_id, "last"), ctx)

    @server.resource(
        FRAME_AT_URI,
        name="job_frame_at",
        title="Frame of a job's video at a time",
        description="PNG of the frame shown at {seconds} (e.g. 2.5).",
        mime_type="image/png",
    )
    async def frame_at(job_id: str, seconds: str, ctx: AppContext) -> bytes:  # pyright: ignore[reportUnusedFunction]
        from server.media.frames import parse_frame_uri

        ref = parse_frame_uri(f"wan-video://jobs/{job_id}/frames/at/{seconds}")
        if ref is None:
            raise ResourceError(f"'{seconds}' is not a time in seconds such as 2.5.")
        return await frame(job_id, ref, ctx)

    @server.resource(
        CONTACT_SHEET_URI,
        name="job_contact_sheet",
        title="Contact sheet of a job's video",
        description="JPEG grid (<= 100 KB) of six evenly spaced frames, each labelled with its time.",
        mime_type="image/jpeg",
    )
    async def sheet(job_id: str, ctx: AppContext) -> bytes:  # pyright: ignore[reportUnusedFunction]
        from server.media.frames import saved_video
        from server.media.video import VideoError

        store = (await core_of(ctx, ResourceError)).store
        try:
            video = await saved_video(store, job_id)
            return await anyio.to_thread.run_sync(_sheet_bytes, video)
        except (WanMcpError, VideoError) as exc:
            raise ResourceError(f"No contact sheet: {exc}") from exc

    @server.resource(
        STITCH_URI,
        name="stitched_video",
        title="Stitched video",
        description="An MP4 made by stitch_videos, as saved in the output folder.",
        mime_type="video/mp4",
    )
    async def stitched(stitch_id: str, ctx: AppContext) -> bytes:  # pyright: ignore[reportUnusedFunction]
        from server.media.stitch import find_stitch

        folder = (await core_of(ctx, ResourceError)).settings.videos_dir
        path = await anyio.to_thread.run_sync(find_stitch, folder, stitch_id)
        if path is None:
            raise ResourceError(f"No stitched video has the id '{stitch_id}'; stitch_videos returns it.")
        return await anyio.to_thread.run_sync(_read_video, path, stitch_id)


def _sheet_bytes(video: Path) -> bytes:
    """The saved sheet, made now for a video archived before sheets existed."""
    from server.media.frames import save_contact_sheet, sheet_path

    path = sheet_path(video)
    if not path.is_file():
        path = save_contact_sheet(video)
    return path.read_bytes()


def _read_video(path: Path, job_id: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_VIDEO_RESOURCE_BYTES:
            raise ResourceError(
                f"The video of job {job_id} is {size // (1024 * 1024)} MB, too big to send here; open {path}."
            )
        return path.read_bytes()
    except OSError as exc:
        raise ResourceError(f"The saved video of job {job_id} cannot be read ({exc.strerror}).") from exc


__all__ = ["register_media_resources", "register_resources"]
