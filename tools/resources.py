"""Resources: a job's JSON record, its saved MP4 and the list of recent jobs."""

from __future__ import annotations

import json
from pathlib import Path

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from server.errors import JobNotFound
from tools import AppContext, core_of
from tools.results import JOB_URI, JOB_VIDEO_URI, JOBS_URI, job_record

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
        core = core_of(ctx)
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
        core = core_of(ctx)
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
        core = core_of(ctx)
        jobs = await core.store.recent(max(1, min(limit, 200)))
        return json.dumps([job_record(job, core) for job in jobs], indent=2)


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


__all__ = ["register_resources"]
