"""The MCP Tasks extension (SEP-2663, ``io.modelcontextprotocol/tasks``) for the generate tools.

A ``<slug>_generate_video`` call from a 2026-07-28 client that declares the extension in that
request is answered with a task instead of a wait. The task is the journal's job: the generate
tool runs as usual (validation, confirmation, caps, budget, duplicate guard), but journals the job
with a task handle and returns once the row is committed; the runner sends it in the background.
``tasks/get`` reads the row, ``tasks/cancel`` goes to the runner. Every other call, and every call
from a client that does not declare the extension, passes through unchanged.

Results are plain dicts: a pydantic dump would drop a ``None`` the schema requires.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolRequestParams, RequestParams
from mcp_types import HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field

from server.core_handle import CoreHandle
from server.errors import WanMcpError
from tools.results import cancel_note, job_result

if TYPE_CHECKING:
    from server.core import Core
    from server.jobs.runner import Submission
    from server.jobs.store import Job

TASKS = "io.modelcontextprotocol/tasks"
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)


@dataclass
class TaskStart:
    """Set while a generate call is answered as a task; the tool leaves its submission here."""

    submission: Submission | None = None


_starting: ContextVar[TaskStart | None] = ContextVar("wan_video_task_start", default=None)


def task_start() -> TaskStart | None:
    """The pending task of this generate call, or None when it is an ordinary call."""
    return _starting.get()


class TaskRef(RequestParams):
    """``{taskId}``: the params of ``tasks/get`` and ``tasks/cancel``."""

    model_config = ConfigDict(defer_build=True)  # built on the first task request, not at start-up
    task_id: str = Field(min_length=1, max_length=200)


class TaskUpdate(TaskRef):
    """``tasks/update``: answers to input requests (this server never asks for any)."""

    input_responses: dict[str, Any] | None = None


async def _core(ctx: ServerRequestContext[Any, Any]) -> Core:
    handle: CoreHandle = ctx.lifespan_context
    try:
        return await handle.get()
    except WanMcpError as exc:
        raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from exc


def _iso(timestamp: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{whole}.{int(timestamp * 1000) % 1000:03d}Z"


class VideoTasks(Extension):
    """Generate calls as tasks for the clients that declare ``io.modelcontextprotocol/tasks``.

    ``tools``: the names of the generate tools (estimates, ``get_result`` and ``list_jobs`` are
    never tasks).
    """

    identifier = TASKS

    def __init__(self, tools: Iterable[str]) -> None:
        self._tools = frozenset(tools)

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskRef, self._get, protocol_versions=_MODERN),
            MethodBinding("tasks/update", TaskUpdate, self._update, protocol_versions=_MODERN),
            MethodBinding("tasks/cancel", TaskRef, self._cancel, protocol_versions=_MODERN),
        ]

    def _declared(self, ctx: ServerRequestContext[Any, Any]) -> bool:
        # A legacy client may list the key too (the Inspector does); the extension is 2026-only.
        if ctx.protocol_version not in _MODERN:
            return False
        capabilities = ctx.session.client_capabilities
        return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        # params.task (the 2025-11-25 way to ask for a task) is ignored, as the extension requires.
        if params.name not in self._tools or not self._declared(ctx):
            return await call_next(ctx)
        start = TaskStart()
        token = _starting.set(start)
        try:
            result = await call_next(ctx)
        finally:
            _starting.reset(token)
        submission = start.submission
        # Refusals, a confirmation still to be given, and a repeat of a finished job are answered
        # as they are: nothing new is running, so there is no task.
        if submission is None or (submission.duplicate and submission.job.is_final):
            return result
        core = await _core(ctx)
        job = await core.ensure_task(submission.job)
        task = self._task(job, core)
        if submission.duplicate:
            task["statusMessage"] = (
                f"This request repeats job {job.id}, so it was not paid for again; this task follows "
                f"that job. {task['statusMessage']}"
            )
        return {"resultType": "task", **task}

    def _task(self, job: Job, core: Core) -> dict[str, Any]:
        """The task's wire fields for the job's current row."""
        from server.jobs.runner import describe_progress

        _, line = describe_progress(job, core.models.get(job.model), time.time())
        if job.status == "cancelled":
            status = "cancelled"
        elif job.is_final:
            status = "completed"
        else:
            status = "working"
        if (note := cancel_note(job)) is not None:
            line = f"{line}. {note}"
        assert job.task_id is not None
        task: dict[str, Any] = {
            "taskId": job.task_id,
            "status": status,
            "statusMessage": line,
            "createdAt": _iso(job.created_at),
            "lastUpdatedAt": _iso(job.updated_at),
            "ttlMs": round(core.settings.task_ttl_days * 86_400_000),
        }
        if status == "working":
            task["pollIntervalMs"] = round(max(core.runner.next_poll_delay(job), 0.0) * 1000)
        return task

    async def _job(self, ctx: ServerRequestContext[Any, Any], params: TaskRef) -> tuple[Job, Core]:
        require_client_extension(ctx, TASKS)
        request = ctx.request
        headers = getattr(request, "headers", None)
        named = headers.get("mcp-name") if headers is not None else None
        if named is not None and named != params.task_id:
            raise MCPError(code=HEADER_MISMATCH, message="The Mcp-Name header does not match taskId.")
        core = await _core(ctx)
        job = await core.task(params.task_id)
        unknown = f"No task has the id {params.task_id!r}."
        if job is None:
            raise MCPError(code=INVALID_PARAMS, message=unknown)
        if time.time() > job.created_at + core.settings.task_ttl_days * 86_400:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"The task {params.task_id!r} has expired; its job is still in the journal: "
                f"call get_result with job_id '{job.id}'.",
            )
        return job, core

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskRef) -> dict[str, Any]:
        job, core = await self._job(ctx, params)
        task = self._task(job, core)
        if task["status"] == "completed":
            try:
                result = await job_result(job, core)
                task["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            except Exception as exc:  # noqa: BLE001 - a fault of ours is the task's error, not the client's
                task.update(
                    status="failed",
                    statusMessage="The server could not build this job's result; call get_result.",
                    error={"code": INTERNAL_ERROR, "message": f"{type(exc).__name__} building the result"},
                )
        return {"resultType": "complete", **task}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdate) -> dict[str, Any]:
        await self._job(ctx, params)
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskRef) -> dict[str, Any]:
        job, core = await self._job(ctx, params)
        await core.cancel(job.id)
        return {"resultType": "complete"}
