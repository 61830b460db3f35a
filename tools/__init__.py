"""The MCP tool surface: one generate and one estimate tool per enabled model, and get_result.

Tools are thin: check the arguments (``server.catalog.params``), call the core, build the result.
Generate and estimate tools publish a JSON Schema written from the catalog and validate with the
catalog's own model, so an agent sees every documented bound and a refusal that names the
parameter and its allowed values; the SDK's generic validation is bypassed for them.

Building the tools loads none of the core: a handler awaits it (``core_of``) and imports what it
needs from it where it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, cast

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import build_resolver_plans, find_resolved_parameters
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from server.catalog import ModelSpec
from server.catalog.params import input_schema
from server.catalog.pricing import price_range
from server.core_handle import CoreHandle
from server.errors import InvalidRequest, WanMcpError
from server.ledger import STATUSES, build_ledger, parse_since
from server.settings import MAX_WAIT_SECONDS, Settings
from tools.results import estimate_result, job_result, ledger_result
from tools.tasks import task_start

if TYPE_CHECKING:
    from server.core import Core
    from server.jobs.runner import ProgressCallback

AppContext = Context[CoreHandle, Any]
# Only readOnlyHint: the spec gives idempotentHint meaning only when readOnlyHint is false.
READ_ONLY = ToolAnnotations(read_only_hint=True)


class RawArguments(ArgModelBase):
    """Hands the tool every argument as sent; the catalog's model validates them."""

    # defer_build: its validator is made on the first call, not at start-up (as for the models below).
    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True, defer_build=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


async def core_of(ctx: AppContext, refusal: Callable[[str], Exception] = ToolError) -> Core:
    """The running core, once it is open. When it could not open, the call is refused with the
    reason as ``refusal`` (the asking surface's error: a tool's, a resource's, a prompt's)."""
    try:
        return await ctx.request_context.lifespan_context.get()
    except WanMcpError as exc:
        raise refusal(str(exc)) from exc


def progress_reporter(ctx: AppContext) -> ProgressCallback:
    async def report(fraction: float, message: str) -> None:
        await ctx.report_progress(round(fraction * 100, 1), 100, message)

    return report


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def wait_schema(settings: Settings) -> dict[str, Any]:
    # The server's own parameters go without descriptions: INSTRUCTIONS explain them once, and
    # the messages that need them (a duplicate, an off-limits image) name them.
    return {
        "type": "number",
        "minimum": 0,
        "maximum": _number(MAX_WAIT_SECONDS),
        "default": _number(settings.default_wait_seconds),
    }


class SpendConfirmation(BaseModel):
    """What the user is asked before an expensive job."""

    model_config = ConfigDict(defer_build=True)
    approve: bool = Field(description="Pay for this video?")


def server_parameters(settings: Settings) -> dict[str, Any]:
    """The generate tool's own parameters, beside the model's."""
    params: dict[str, Any] = {
        "wait_seconds": wait_schema(settings),
        "new_take": {"type": "boolean", "default": False},
        "fix_image": {"type": "boolean", "default": False},
        "variants": {"enum": [1, 2, 3, 4]},
    }
    if settings.spend.confirm_above_usd is not None:
        params["confirm_cost_usd"] = {
            "type": "number",
            "minimum": 0,
            "description": "The USD price the user agreed to, when asked to confirm.",
        }
    return params


# Per handler signature ("plain" ``(arguments, ctx)``, or "confirm" with the spend confirmation),
# the first tool made with it; later ones reuse its FuncMetadata, which depends on nothing but that
# signature and costs a pydantic model to derive at start-up.
_SHAPES: dict[str, Tool] = {}


def raw_tool(
    fn: Callable[..., Awaitable[CallToolResult]],
    *,
    name: str,
    title: str | None,
    description: str,
    schema: dict[str, Any],
    annotations: ToolAnnotations,
    shape: str,
) -> Tool:
    """A tool that publishes ``schema`` and hands its handler the arguments as sent (it checks
    them itself); ``shape`` names the handler's signature."""
    first = _SHAPES.get(shape)
    if first is not None:
        # A resolver is the handler's own (a closure per model): its plan is made for this handler.
        # Resolvers take the tool's arguments by the one name RawArguments passes them as.
        resolved = find_resolved_parameters(fn)
        changes = {
            "name": name,
            "title": title,
            "description": description,
            "annotations": annotations,
            "fn": fn,
            "parameters": schema,
            "resolved_params": resolved,
            "resolver_plans": build_resolver_plans(resolved, {"arguments"}),
        }
        return first.model_copy(update=changes)
    tool = Tool.from_function(fn, name=name, title=title, description=description, annotations=annotations)
    tool.parameters = schema
    tool.fn_metadata.arg_model = RawArguments
    _SHAPES[shape] = tool.model_copy()  # kept as made: callers may change the tool they get
    return tool


def generate_tool(spec: ModelSpec, settings: Settings) -> Tool:
    """``<slug>_generate_video``."""

    async def ask_to_confirm(arguments: dict[str, Any], ctx: AppContext) -> Elicit[SpendConfirmation] | str:
        try:
            estimate = (await core_of(ctx)).price_to_confirm(spec, arguments)
        except WanMcpError:
            return "invalid arguments: the tool reports them"
        if estimate is None:
            return "not needed"
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            return "client cannot ask"
        return Elicit(
            f"Generate a video with {spec.title} for about ${estimate.usd:.2f}? ({estimate.basis})",
            SpendConfirmation,
        )

    async def generate_video(
        arguments: dict[str, Any],
        ctx: AppContext,
        confirmation: Annotated[ElicitationResult[SpendConfirmation], Resolve(ask_to_confirm)],
    ) -> CallToolResult:
        core = await core_of(ctx)
        declined = ToolError(
            "The user did not agree to the price, so nothing was sent and nothing was charged."
        )
        if not isinstance(confirmation, AcceptedElicitation):
            raise declined
        # The user's answer when they were asked; otherwise the resolver's note of why not.
        answer = cast(object, confirmation.data)
        approved = isinstance(answer, SpendConfirmation) and answer.approve
        if isinstance(answer, SpendConfirmation) and not approved:
            raise declined
        task = task_start()
        try:
            submission = await core.generate(
                spec, arguments, progress_reporter(ctx), user_confirmed=approved, as_task=task is not None
            )
        except WanMcpError as exc:
            raise ToolError(str(exc)) from exc
        if task is not None:
            task.submission = submission
        return await job_result(submission.job, core, duplicate=submission.duplicate, takes=submission.takes)

    # Set after the fact: the resolver is a local function, which a string annotation can't name.
    generate_video.__annotations__["confirmation"] = Annotated[
        ElicitationResult[SpendConfirmation], Resolve(ask_to_confirm)
    ]

    return raw_tool(
        generate_video,
        name=f"{spec.slug}_generate_video",
        title=spec.title,
        description=(f"{spec.blurb} Paid: {price_range(spec)}."),
        schema=input_schema(spec, spec.param, server_parameters(settings)),
        # openWorldHint is true by the spec's default, so it is not sent.
        annotations=ToolAnnotations(destructive_hint=False),
        shape="confirm",
    )


def estimate_tool(spec: ModelSpec) -> Tool:
    """``<slug>_estimate_cost``."""

    async def estimate_cost(arguments: dict[str, Any], ctx: AppContext) -> CallToolResult:
        try:
            result = await (await core_of(ctx)).estimate(spec, arguments)
        except WanMcpError as exc:
            raise ToolError(str(exc)) from exc
        return estimate_result(result)

    # Only the priced parameters are declared (a short tools/list); every other generate argument
    # is accepted as an extra one and checked exactly as generate checks it.
    return raw_tool(
        estimate_cost,
        name=f"{spec.slug}_estimate_cost",
        # No title: one per model would cost ~45 bytes of every tools/list for a label that
        # only repeats the name; the generate tool beside it carries the model's title.
        title=None,
        description="Free: USD price and its source; takes the generate arguments.",
        schema=input_schema(spec, spec.priced_params, closed=False),
        annotations=READ_ONLY,
        shape="plain",
    )


def get_result_tool(settings: Settings) -> Tool:
    """``get_result``: one job of any model."""

    async def get_result(arguments: dict[str, Any], ctx: AppContext) -> CallToolResult:
        core = await core_of(ctx)
        try:
            unknown = set(arguments) - {"job_id", "wait_seconds"}
            if unknown:
                raise InvalidRequest(
                    f"Unknown parameter(s) {', '.join(sorted(unknown))}; use job_id, wait_seconds."
                )
            job_id = arguments.get("job_id")
            if not isinstance(job_id, str) or not 1 <= len(job_id) <= 200:
                raise InvalidRequest("'job_id' is required: the job_id a generate call returned.")
            job = await core.get_result(
                job_id, core.parse_wait(arguments.get("wait_seconds")), progress_reporter(ctx)
            )
        except WanMcpError as exc:
            raise ToolError(str(exc)) from exc
        return await job_result(job, core)

    schema = {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "wait_seconds": wait_schema(settings),
        },
        "required": ["job_id"],
        "additionalProperties": False,
    }
    return raw_tool(
        get_result,
        name="get_result",
        title="Get video job result",
        description="A job's status; waits up to wait_seconds. Completed: video_url.",
        schema=schema,
        annotations=READ_ONLY,
        shape="plain",
    )


def list_jobs_tool(models: list[ModelSpec]) -> Tool:
    """``list_jobs``: recent jobs with a spend summary."""
    slugs = [m.slug for m in models]

    async def list_jobs(arguments: dict[str, Any], ctx: AppContext) -> CallToolResult:
        core = await core_of(ctx)
        try:
            filters = _list_filters(arguments, slugs)
            ledger = await build_ledger(core.store, core.settings.spend, **filters)
        except WanMcpError as exc:
            raise ToolError(str(exc)) from exc
        return ledger_result(ledger, core)

    schema = {
        "type": "object",
        "properties": {
            "status": {"enum": list(STATUSES)},
            "model": {"enum": slugs},
            "since": {
                "type": "string",
                "description": "24h, 7d, 2w or an ISO date.",
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
        },
        "additionalProperties": False,
    }
    return raw_tool(
        list_jobs,
        name="list_jobs",
        title="List video jobs and spend",
        description="Recent jobs with costs, totals per day and model, budget left.",
        schema=schema,
        annotations=READ_ONLY,
        shape="plain",
    )


def _list_filters(arguments: dict[str, Any], slugs: list[str]) -> dict[str, Any]:
    unknown = set(arguments) - {"status", "model", "since", "limit"}
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter(s) {', '.join(sorted(unknown))}; use status, model, since, limit."
        )
    status, model, limit = arguments.get("status"), arguments.get("model"), arguments.get("limit", 20)
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"'status' must be one of {', '.join(STATUSES)}; got {status!r}.")
    if model is not None and model not in slugs:
        raise InvalidRequest(f"'model' must be one of {', '.join(slugs)}; got {model!r}.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 200:
        raise InvalidRequest(f"'limit' must be an integer from 1 to 200; got {limit!r}.")
    since = arguments.get("since")
    if since is not None and not isinstance(since, str):
        raise InvalidRequest(f"'since' must be text such as 24h or 2026-11-01; got {since!r}.")
    return {"status": status, "model": model, "since": parse_since(since), "limit": limit}


def build_tools(models: list[ModelSpec], settings: Settings) -> list[Tool]:
    """Every tool for the enabled models, in catalog order, then list_jobs, get_result, stitch_videos."""
    tools: list[Tool] = []
    for spec in models:
        tools.append(generate_tool(spec, settings))
        tools.append(estimate_tool(spec))
    tools.append(list_jobs_tool(models))
    tools.append(get_result_tool(settings))
    from tools.stitch import stitch_tool

    tools.append(stitch_tool())
    return tools
