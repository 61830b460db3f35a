"""Build the MCP server: the composition root, the one module below which ``mcp`` meets the core."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateSecurity

from server import __version__
from server.catalog import load_catalog
from server.core_handle import CoreHandle
from server.errors import WanMcpError
from server.settings import Settings

if TYPE_CHECKING:
    import httpx

    from server.core import Core

INSTRUCTIONS = (
    "Turns a still image into a short video with Wan 2.x models. Per model: <model>_estimate_cost "
    "(free) and <model>_generate_video (costs money). A generate call waits up to wait_seconds "
    "(0: not at all), then returns job_id and status; call get_result(job_id) until status is "
    "completed (video_url, local_path) or failed (error). Never call generate again just because a "
    "call returned early: a request identical to a recent one returns that job, and new_take=true "
    "pays for another take. image and last_image: an https URL, a data: URI, a local file path or a "
    "frame of a completed job, wan-video://jobs/{job_id}/frames/last (or first, at/{seconds}), to "
    "continue its shot; fix_image=true rescales or flattens an image outside the model's limits "
    "instead of refusing it. seed -1 is random; an explicit seed lets a take be repeated. variants=N "
    "(1-4, default 1) makes N takes, each its own seed, priced as a set. stitch_videos joins completed jobs "
    "into one MP4, free. The prompts animate_photo and "
    "compare_takes say how to write a Wan prompt, pick a model and judge takes."
)


class CoreRef:
    """The running core, for what lives beside the MCP app (the webhook route)."""

    def __init__(self) -> None:
        self.handle: CoreHandle | None = None

    async def wavespeed_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """``POST /webhooks/wavespeed``: handed to the core once the server runs (and it is open)."""
        if self.handle is None:
            return 503, "starting"
        try:
            core = await self.handle.get()
        except WanMcpError:
            return 503, "not running"
        answer = await core.receive_webhook("wavespeed", headers, body)
        return answer.status, answer.reason


def build_server(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    core_ref: CoreRef | None = None,
) -> MCPServer[CoreHandle]:
    """An ``MCPServer`` with a tool pair per enabled model, ``get_result``, the job resources, the
    prompts and the video player (an MCP App).

    ``transport`` mounts a fake provider in-process (tests); by default providers are real HTTP.
    ``core_ref`` is given the core's handle while the server runs. The core opens in the background
    (``server.core_handle``): the first answers do not wait for it.
    """
    from tools import build_tools
    from tools.player import attach_player, player_extension
    from tools.prompts import register_prompts
    from tools.resources import register_resources
    from tools.tasks import VideoTasks

    models = list(load_catalog().select(settings.models))

    def opener() -> AbstractAsyncContextManager[Core]:
        from server.core import open_core

        return open_core(settings, transport=transport)

    @asynccontextmanager
    async def lifespan(_: MCPServer[CoreHandle]) -> AsyncGenerator[CoreHandle]:
        handle = CoreHandle()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(handle.run, opener, name="core")
            if core_ref is not None:
                core_ref.handle = handle
            try:
                yield handle
            finally:
                if core_ref is not None:
                    core_ref.handle = None
                handle.close()

    tools = attach_player(build_tools(models, settings))
    tasks = VideoTasks(tool.name for tool in tools if tool.name.endswith("_generate_video"))
    keys = [k.get_secret_value() for k in settings.http.request_state_keys]
    server: MCPServer[CoreHandle] = MCPServer(
        name="wan-video-mcp",
        request_state_security=RequestStateSecurity(keys=keys) if keys else None,
        title="Wan image-to-video",
        version=__version__,
        instructions=INSTRUCTIONS,
        tools=tools,
        extensions=[tasks, player_extension()],
        lifespan=lifespan,
    )
    register_resources(server)
    register_prompts(server, models)
    return server
