"""``wan-video-mcp demo``: the server driven end to end by a real MCP client over stdio.

It starts ``python -m server serve`` as a subprocess (its log goes to a file), prices a video with
the estimate tool, generates it while drawing a progress bar from the progress notifications,
and prints where the video is. In the sandbox it draws its own sample image and costs nothing;
for real, it shows the price and asks before spending. It talks to the user on stdout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import anyio
import anyio.to_thread
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent, Tool

from server.catalog import ModelSpec, load_catalog
from server.doctor import KEY_VARIABLES
from server.errors import ConfigError
from server.settings import Settings

SANDBOX_MODEL = "wan22_i2v_480p_ultra_fast"
SAMPLE_PROMPT = (
    "the sun sinks slowly behind the mountains, soft ripples glitter on the lake, "
    "a gentle breeze, slow cinematic dolly-in"
)
SANDBOX_POLL_SECONDS = "0.2"
SANDBOX_LIMIT_SECONDS = 120.0
WAIT_SECONDS = 30
LIVE = frozenset({"queued", "running", "unconfirmed"})


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the user asked for on the command line."""

    sandbox: bool = False
    model: str | None = None
    image: str | None = None
    prompt: str | None = None
    yes: bool = False
    home: Path | None = None


class DemoError(Exception):
    """A reason to stop, written for the user."""


@dataclass
class _Plan:
    sandbox: bool
    spec: ModelSpec
    settings: Settings
    image: str
    prompt: str
    extra_dirs: list[Path] = field(default_factory=list[Path])


def run_demo(
    options: DemoOptions,
    *,
    out: TextIO | None = None,
    answers: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the demo; 0 when the video is ready, 1 when it failed or was declined, 2 on bad input."""
    console = _Console(out if out is not None else sys.stdout)
    env = dict(os.environ if environ is None else environ)
    job: dict[str, str] = {}
    try:
        plan = _plan(options, env)
        return anyio.run(_demo, plan, options, env, console, answers or sys.stdin, job)
    except DemoError as exc:
        console.say(f"wan-video-mcp demo: {exc}")
        return 2
    except KeyboardInterrupt:
        console.say("")
        console.say("Interrupted.")
        if job.get("id"):
            console.say(
                f"Job {job['id']} is still in the journal: the server follows it again when it starts; "
                "ask an MCP client for get_result with that job_id."
            )
        return 130


def _plan(options: DemoOptions, env: dict[str, str]) -> _Plan:
    if options.home is not None:
        env["WAN_MCP_HOME"] = str(options.home.expanduser().resolve())
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        raise DemoError(str(exc)) from exc
    own_inputs = options.image is not None or options.prompt is not None or options.model is not None
    sandbox = options.sandbox or settings.sandbox or not own_inputs
    slug = options.model or SANDBOX_MODEL
    catalog = load_catalog()
    if slug not in catalog.slugs:
        raise DemoError(f"unknown model '{slug}'; choose from {', '.join(catalog.slugs)}.")
    spec = next(m for m in catalog.model if m.slug == slug)
    if not sandbox:
        key = settings.wavespeed_api_key if spec.provider == "wavespeed" else settings.vtrix_api_key
        if key is None:
            raise DemoError(
                f"{slug} needs {KEY_VARIABLES[spec.provider]}, which is not set. Set it, or add --sandbox "
                "to try the same thing free with the built-in emulator."
            )
    plan = _Plan(sandbox, spec, settings, "", options.prompt or SAMPLE_PROMPT)
    if options.image is None:
        # The server reads its own folders (WAN_MCP_HOME), even under a hidden ~/.local/share.
        plan.image = str(make_sample_image(settings.home / "demo" / "sample-sunset.png"))
    elif options.image.startswith(("https://", "http://", "data:")):
        plan.image = options.image
    else:
        path = Path(options.image).expanduser().resolve()
        if not path.is_file():
            raise DemoError(f"--image {options.image!r} is not a file.")
        plan.image = str(path)
        plan.extra_dirs.append(path.parent)
    return plan


def make_sample_image(path: Path, size: tuple[int, int] = (832, 480)) -> Path:
    """Draw a sunset over mountains and a lake (an RGB PNG) at ``path``, and return it."""
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    horizon = int(height * 0.62)
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    sky = ((28, 30, 84), (122, 52, 120), (242, 110, 76), (255, 196, 110))
    for y in range(horizon):
        draw.line([(0, y), (width, y)], fill=_blend(sky, y / max(1, horizon - 1)))
    sun_x, sun_y, radius = int(width * 0.62), int(horizon - height * 0.24), int(height * 0.1)
    glow = Image.new("L", size, 0)
    ImageDraw.Draw(glow).ellipse(
        [sun_x - radius * 3, sun_y - radius * 3, sun_x + radius * 3, sun_y + radius * 3], fill=150
    )
    image.paste((255, 170, 90), (0, 0, width, height), glow.filter(ImageFilter.GaussianBlur(radius)))
    draw = ImageDraw.Draw(image)
    draw.ellipse([sun_x - radius, sun_y - radius, sun_x + radius, sun_y + radius], fill=(255, 236, 170))
    ridges = (
        (
            (84, 44, 104),
            [
                (0.0, 0.10),
                (0.14, 0.24),
                (0.27, 0.15),
                (0.43, 0.30),
                (0.58, 0.12),
                (0.76, 0.26),
                (0.9, 0.16),
                (1.0, 0.22),
            ],
        ),
        (
            (46, 26, 70),
            [
                (0.0, 0.16),
                (0.1, 0.07),
                (0.22, 0.19),
                (0.38, 0.08),
                (0.52, 0.14),
                (0.68, 0.05),
                (0.84, 0.17),
                (1.0, 0.09),
            ],
        ),
    )
    for colour, peaks in ridges:
        outline = [(int(x * width), int(horizon - h * height)) for x, h in peaks]
        draw.polygon([(0, horizon), *outline, (width, horizon)], fill=colour)
    water = ((58, 40, 92), (20, 22, 58))
    for y in range(horizon, height):
        draw.line([(0, y), (width, y)], fill=_blend(water, (y - horizon) / max(1, height - horizon - 1)))
    for row in range(14):
        y = horizon + 6 + row * (height - horizon - 10) // 14
        half = int(radius * (1.3 - row * 0.06) * (1 + (row % 3) * 0.25))
        draw.line([(sun_x - half, y), (sun_x + half, y)], fill=(255, 200, 120), width=2)
    for bird in range(3):
        bx, by = int(width * (0.25 + bird * 0.06)), int(height * (0.22 + (bird % 2) * 0.05))
        draw.line([(bx - 9, by - 4), (bx, by), (bx + 9, by - 4)], fill=(40, 24, 60), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def _blend(stops: tuple[tuple[int, int, int], ...], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    a, b = stops[i], stops[i + 1]
    return (round(a[0] + (b[0] - a[0]) * f), round(a[1] + (b[1] - a[1]) * f), round(a[2] + (b[2] - a[2]) * f))


def server_environment(plan: _Plan, env: Mapping[str, str]) -> dict[str, str]:
    """The environment of the demo's own server process."""
    child = dict(env)
    child["WAN_MCP_HOME"] = str(plan.settings.home)
    child["WAN_MCP_MODELS"] = plan.spec.slug
    allowed = [str(d) for d in plan.settings.allowed_dirs] + [str(d) for d in plan.extra_dirs]
    child["WAN_MCP_ALLOWED_DIRS"] = os.pathsep.join(dict.fromkeys(allowed))
    if plan.sandbox:
        child["WAN_MCP_POLL_INTERVAL"] = SANDBOX_POLL_SECONDS
    return child


async def _demo(
    plan: _Plan,
    options: DemoOptions,
    env: dict[str, str],
    console: _Console,
    answers: TextIO,
    job: dict[str, str],
) -> int:
    log_path = plan.settings.home / "demo" / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-m", "server", "serve", "--log-level", "INFO"] + (["--sandbox"] if plan.sandbox else [])
    params = StdioServerParameters(command=sys.executable, args=args, env=server_environment(plan, env))
    if plan.sandbox:
        console.say(
            "wan-video-mcp demo (SANDBOX: the built-in emulator plays the provider; nothing is charged)"
        )
    else:
        console.say(f"wan-video-mcp demo: a REAL job on {plan.spec.provider} (it costs money)")
    console.say(f"  model   {plan.spec.slug}")
    console.say(f"  image   {plan.image if len(plan.image) < 120 else plan.image[:100] + '...'}")
    console.say(f"  prompt  {plan.prompt}")
    console.say(f"  server  {sys.executable} {' '.join(args)}  (log: {log_path})")
    with log_path.open("w", encoding="utf-8") as log:
        limit = SANDBOX_LIMIT_SECONDS if plan.sandbox else None
        try:
            with anyio.fail_after(limit):
                async with Client(stdio_client(params, errlog=log)) as client:
                    return await _session(client, plan, options, console, answers, job)
        except* MCPError as group:
            console.say(f"The server stopped answering ({_first(group)}); its log: {log_path}")
        except* TimeoutError:
            console.say(f"The demo did not finish within {limit or 0:.0f} s; the server's log: {log_path}")
    return 1


async def _session(
    client: Client,
    plan: _Plan,
    options: DemoOptions,
    console: _Console,
    answers: TextIO,
    job: dict[str, str],
) -> int:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    estimate_tool, generate_tool = f"{plan.spec.slug}_estimate_cost", f"{plan.spec.slug}_generate_video"
    if estimate_tool not in tools or generate_tool not in tools:
        console.say(f"The server did not offer {generate_tool}; see its log.")
        return 1
    arguments: dict[str, Any] = {"image": plan.image, "prompt": plan.prompt}
    if "prompt" not in _properties(tools[generate_tool]):
        arguments.pop("prompt")
    estimate = await client.call_tool(
        estimate_tool, {k: v for k, v in arguments.items() if k in _properties(tools[estimate_tool])}
    )
    if estimate.is_error:
        console.say(f"The estimate failed: {_text(estimate)}")
        return 1
    price = dict(estimate.structured_content or {})
    usd = float(price.get("usd", 0.0))
    console.say("")
    console.say(f"Price: ${usd:.2f} ({price.get('source', '?')}: {price.get('basis', '')})")
    if plan.sandbox:
        console.say("  That is what the real provider would charge. Here, in the sandbox, it is free.")
        if "new_take" in _properties(tools[generate_tool]):
            arguments["new_take"] = True
    else:
        if not await _agreed(plan, options, usd, console, answers):
            return 1
        if "confirm_cost_usd" in _properties(tools[generate_tool]):
            arguments["confirm_cost_usd"] = usd
    console.say("")
    console.say("Generating...")
    bar = ProgressBar(console)
    result = await client.call_tool(generate_tool, arguments, progress_callback=bar)
    record = dict(result.structured_content or {})
    job["id"] = str(record.get("job_id", ""))
    while record.get("status") in LIVE:
        result = await client.call_tool(
            "get_result", {"job_id": job["id"], "wait_seconds": WAIT_SECONDS}, progress_callback=bar
        )
        record = dict(result.structured_content or {})
    bar.finish()
    return _report(result, record, console)


def _report(result: CallToolResult, record: dict[str, Any], console: _Console) -> int:
    console.say(_text(result))
    if record.get("status") != "completed":
        return 1
    console.say("")
    console.say(f"Job:        {record.get('job_id')}{'  [sandbox]' if record.get('sandbox') else ''}")
    for label, key in (("MP4:", "local_path"), ("Poster:", "poster_path")):
        if record.get(key):
            console.say(f"{label:<11} {record[key]}")
    url = record.get("video_url")
    if url:
        note = "  (served by the demo's emulator: gone once the demo ends)" if record.get("sandbox") else ""
        console.say(f"Video URL:  {url}{note}")
    if record.get("cost_usd") is not None:
        console.say(f"Cost:       ${float(record['cost_usd']):.2f}")
    return 0


async def _agreed(plan: _Plan, options: DemoOptions, usd: float, console: _Console, answers: TextIO) -> bool:
    if options.yes:
        console.say(f"  --yes: agreeing to about ${usd:.2f}.")
        return True
    if not answers.isatty():
        console.say(
            f"Refusing to spend about ${usd:.2f} without asking: standard input is not a terminal. "
            "Run it again with --yes to agree to this price, or add --sandbox to try it free."
        )
        return False
    console.say(f"Generate this video with {plan.spec.slug} for about ${usd:.2f}? [y/N] ", end="")
    reply = await anyio.to_thread.run_sync(answers.readline)
    if reply.strip().lower() in ("y", "yes"):
        return True
    console.say("Not generated; nothing was sent or charged.")
    return False


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        error = group.exceptions[0]
    return error


def _properties(tool: Tool) -> dict[str, Any]:
    return dict(tool.input_schema.get("properties") or {})


def _text(result: CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, TextContent))


class _Console:
    """Where the demo talks to the user (stdout: the demo is not the MCP server)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def say(self, text: str, end: str = "\n") -> None:
        self.out.write(text + end)  # stdout-ok
        self.out.flush()


class ProgressBar:
    """A progress callback that draws a text bar: redrawn in place on a terminal, else one line per change."""

    width = 30

    def __init__(self, console: _Console) -> None:
        self._console = console
        self._last = ""
        self._drawn = 0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        fraction = min(max(progress / total, 0.0), 1.0) if total else 0.0
        filled = round(fraction * self.width)
        line = f"  [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:3.0f}%  {message or ''}"
        if line == self._last:
            return
        self._last = line
        if self._console.tty:
            self._console.say("\r" + line.ljust(self._drawn), end="")
            self._drawn = len(line)
        else:
            self._console.say(line)

    def finish(self) -> None:
        """End the bar's line."""
        if self._console.tty and self._drawn:
            self._console.say("")
            self._drawn = 0
