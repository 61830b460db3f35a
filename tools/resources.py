"""Resources: a job's JSON record and the list of recent jobs."""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from server.errors import JobNotFound
from tools import AppContext, core_of
from tools.results import JOB_URI, JOBS_URI, job_record


def register_resources(server: MCPServer) -> None:
    """Add the job template and the recent-jobs listing to ``server``."""

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
            job = core.store.get(job_id)
        except JobNotFound as exc:
            raise ResourceError(str(exc)) from exc
        return json.dumps(job_record(job, core), indent=2)

    @server.resource(
        JOBS_URI + "{?limit}",
        name="jobs",
        title="Recent video jobs",
        description="The most recent jobs (default 20, at most 200), newest first, as JSON.",
        mime_type="application/json",
    )
    async def jobs_resource(ctx: AppContext, limit: int = 20) -> str:  # pyright: ignore[reportUnusedFunction]
        core = core_of(ctx)
        jobs = core.store.recent(max(1, min(limit, 200)))
        return json.dumps([job_record(job, core) for job in jobs], indent=2)


__all__ = ["register_resources"]
