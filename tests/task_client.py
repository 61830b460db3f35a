"""A small SEP-2663 client for the tests: the SDK ``Client`` plus an extension that declares
``io.modelcontextprotocol/tasks``, claims ``resultType: "task"`` and follows a task with
``tasks/get`` (honouring ``pollIntervalMs``) to its final result."""

from __future__ import annotations

from typing import Any, Literal

import anyio
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict

TASKS = "io.modelcontextprotocol/tasks"


class TaskRef(RequestParams):
    task_id: str


class TaskCreated(Result):
    """The flat ``CreateTaskResult``."""

    model_config = ConfigDict(extra="allow")

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskState(Result):
    """A ``tasks/get`` answer (``DetailedTask``)."""

    model_config = ConfigDict(extra="allow")

    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Ack(Result):
    model_config = ConfigDict(extra="allow")


class GetTask(Request[TaskRef, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskRef, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class TasksClient(ClientExtension):
    """Resolves a task inside ``call_tool``; ``seen`` keeps every state it read, in order."""

    identifier = TASKS

    def __init__(self, max_poll_s: float = 0.05) -> None:
        self.max_poll_s = max_poll_s
        self.created: list[TaskCreated] = []
        self.seen: list[TaskState] = []

    def claims(self) -> list[ResultClaim[TaskCreated]]:
        return [ResultClaim(result_type="task", model=TaskCreated, resolve=self.follow)]

    async def follow(self, task: TaskCreated, cctx: ClaimContext) -> CallToolResult:
        self.created.append(task)
        get = GetTask(params=TaskRef(task_id=task.task_id))
        pause = task.poll_interval_ms
        while True:
            await anyio.sleep(min((pause or 0) / 1000, self.max_poll_s))
            state = await cctx.session.send_request(get, TaskState)
            self.seen.append(state)
            if state.status != "working":
                break
            pause = state.poll_interval_ms
        if state.status != "completed" or state.result is None:
            raise AssertionError(f"task ended {state.status}: {state.status_message} {state.error}")
        return CallToolResult.model_validate(state.result)


async def get_task(client: Client, task_id: str) -> TaskState:
    return await client.session.send_request(GetTask(params=TaskRef(task_id=task_id)), TaskState)


async def cancel_task(client: Client, task_id: str) -> Ack:
    return await client.session.send_request(CancelTask(params=TaskRef(task_id=task_id)), Ack)


async def start_task(client: Client, name: str, arguments: dict[str, Any]) -> TaskCreated:
    """A generate call's raw answer, which must be a task."""
    answer = await client.session.call_tool(name, arguments, allow_claimed=True)
    assert isinstance(answer, TaskCreated), answer
    return answer


async def until(client: Client, task_id: str, done: Any, seconds: float = 20) -> TaskState:
    """Poll ``tasks/get`` until ``done(state)``; bounded."""
    with anyio.fail_after(seconds):
        while True:
            state = await get_task(client, task_id)
            if done(state):
                return state
            await anyio.sleep(0.01)
