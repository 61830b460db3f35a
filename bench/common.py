"""What every scenario shares: settings, the emulator, MCP result helpers, probes and servers."""

from __future__ import annotations

import base64
import io
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import psutil
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr

from server.jobs.store import Job, SqliteStore
from server.sandbox import EmuJob, Emulator
from server.settings import PollPolicy, Settings

WS_KEY = "ws-bench-key-0123456789"
VX_KEY = "vx-bench-key-0123456789"
IN_PROCESS = "http://testserver"
WAVESPEED_MODELS = (
    "wan22_i2v_480p_ultra_fast",
    "wan22_i2v_480p_lora_ultra_fast",
    "wan22_i2v",
    "wan21_i2v_480p",
)
VTRIX_MODELS = ("wan22_i2v_flash",)
MODELS = WAVESPEED_MODELS + VTRIX_MODELS
CAT_URL = "https://example.com/cat.png"
FAST_POLL = PollPolicy(
    interval=0, max_interval=0, retry_base=0, retry_cap=0, heartbeat=0.5, reconcile_grace=0
)
# The SDK's whole message for an exception a tool did not mean to raise: a crash.
_GENERIC = re.compile(r"(?:Error executing tool \S+?:?\s*)+")


def new_emulator(*, fps: int = 2, scale: float = 0.1) -> Emulator:
    """The provider emulator with both keys set and tiny, fast videos."""
    emulator = Emulator(wavespeed_key=WS_KEY, vtrix_key=VX_KEY)
    emulator.fps = fps
    emulator.render_scale = scale
    return emulator


def bench_settings(home: Path, base_url: str = IN_PROCESS, **changes: object) -> Settings:
    """Settings for a scenario: keys set, both providers at ``base_url``, no poll pauses."""
    values: dict[str, object] = {
        "wavespeed_api_key": SecretStr(WS_KEY),
        "vtrix_api_key": SecretStr(VX_KEY),
        "wavespeed_base_url": base_url,
        "vtrix_base_url": base_url,
        "home": home,
        "allowed_dirs": (home,),
        "poll": FAST_POLL,
        "default_wait_seconds": 20.0,
    }
    values.update(changes)
    return Settings.model_validate(values)


def stdio_params(
    home: Path, base_url: str, *, poll_interval: float = 0.02, log_level: str = "ERROR", **env: str
) -> StdioServerParameters:
    """``python -m server serve`` over stdio, both vendors at ``base_url``, journal in ``home``.

    Polls are a fixed ``poll_interval`` apart and unpaced (no per-provider rate): these runs
    measure the server, not its politeness towards a provider.
    """
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--log-level", log_level],
        env={
            "WAVESPEED_API_KEY": WS_KEY,
            "VTRIX_API_KEY": VX_KEY,
            "WAVESPEED_BASE_URL": base_url,
            "VTRIX_BASE_URL": base_url,
            "WAN_MCP_HOME": str(home),
            "WAN_MCP_ALLOWED_DIRS": str(home),
            "WAN_MCP_POLL_INTERVAL": str(poll_interval),
            "WAN_MCP_PROVIDER_RATE": "0",
            **env,
        },
    )


@asynccontextmanager
async def stdio_session(
    params: StdioServerParameters, **client_options: Any
) -> AsyncIterator[tuple[Client, psutil.Process]]:
    """An MCP client over stdio and the server process it started (to measure or to kill)."""
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    home = (params.env or {}).get("WAN_MCP_HOME")
    async with Client(params, **client_options) as client:
        started = [p for p in me.children() if p.pid not in before and _home_of(p) == home]
        assert len(started) == 1, f"expected one new server process, found {started}"
        yield client, started[0]


def _home_of(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("WAN_MCP_HOME")
    except psutil.Error:
        return None


@asynccontextmanager
async def serve_http(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in this event loop; yield its /mcp URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    # Idle connections kept 75 s: at uvicorn's default 5 s, equal to httpx's client-side expiry, a
    # client can reuse a connection just as the server closes it and the request is lost (ReadError).
    config = uvicorn.Config(
        app, log_config=None, access_log=False, log_level="warning", backlog=1024, timeout_keep_alive=75
    )
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                server.should_exit = True
    finally:
        sock.close()


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def record_of(result: CallToolResult) -> dict[str, Any] | None:
    """A job result's structured content (None for an error without one)."""
    content = result.structured_content
    return dict(content) if isinstance(content, Mapping) else None


def is_crash(text: str) -> bool:
    """True for an empty error or the SDK's bare "Error executing tool X": an unexpected exception."""
    return not text.strip() or _GENERIC.fullmatch(text.strip()) is not None


def png_data_uri(side: int = 400, color: tuple[int, int, int] = (200, 120, 40)) -> str:
    """A valid PNG image (inside both vendors' limits) as a data: URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def prompt_of(body: object) -> str | None:
    """The ``prompt`` anywhere in a provider request body (vendors nest it differently)."""
    if isinstance(body, Mapping):
        mapping = cast(Mapping[str, object], body)
        found = mapping.get("prompt")
        if isinstance(found, str):
            return found
        values: list[object] = list(mapping.values())
    elif isinstance(body, list):
        values = cast(list[object], body)
    else:
        return None
    for value in values:
        inner = prompt_of(value)
        if inner is not None:
            return inner
    return None


def journal(path: Path) -> list[Job]:
    """Every row of a journal file, read through a connection of its own."""
    store = SqliteStore(path)
    try:
        return store.select_now(limit=1_000_000)
    finally:
        store.close_now()


@dataclass
class Ledger:
    """Provider side against journal side: who created what, and how often."""

    submissions: int
    distinct_requests: int
    orphans: list[str] = field(default_factory=list[str])
    wrong_adoptions: list[str] = field(default_factory=list[str])
    shared: list[str] = field(default_factory=list[str])

    @property
    def duplicates(self) -> int:
        return self.submissions - self.distinct_requests


def reconcile_ledger(emulator: Emulator, rows: list[Job]) -> Ledger:
    """Compare the provider's jobs with the journal's rows (every request has its own prompt).

    - a duplicate: two provider jobs for one request;
    - an orphan: a provider job that no row names and no unconfirmed row could be;
    - a wrong adoption: a row whose provider job was made for another request;
    - shared: one provider job named by two rows.
    """
    jobs: list[EmuJob] = emulator.submissions()
    prompts = [prompt_of(job.body) for job in jobs]
    ledger = Ledger(submissions=len(jobs), distinct_requests=len(set(prompts)))
    by_provider_id: dict[str, list[Job]] = {}
    for row in rows:
        if row.provider_job_id is not None:
            by_provider_id.setdefault(row.provider_job_id, []).append(row)
    by_prompt: dict[str, list[Job]] = {}
    for row in rows:
        by_prompt.setdefault(str(row.params.get("prompt")), []).append(row)
    for job, prompt in zip(jobs, prompts, strict=True):
        named = by_provider_id.get(job.id, [])
        if len(named) > 1:
            ledger.shared.append(f"{job.id} is named by {[r.id for r in named]}")
        for row in named:
            if row.params.get("prompt") != prompt:
                ledger.wrong_adoptions.append(
                    f"{row.id} ({row.params.get('prompt')!r}) holds provider job {job.id} made for {prompt!r}"
                )
        if not named:
            waiting = [r for r in by_prompt.get(str(prompt), []) if r.status == "unconfirmed"]
            if not waiting:
                ledger.orphans.append(f"provider job {job.id} ({prompt!r}) is in no journal row")
    return ledger


@dataclass
class Countdown:
    """Sets ``done`` once ``tick`` has been called ``count`` times."""

    count: int
    done: anyio.Event = field(default_factory=anyio.Event)

    def tick(self) -> None:
        self.count -= 1
        if self.count <= 0:
            self.done.set()


@dataclass
class ProgressLog:
    """Progress notifications of one call; ``on_first`` runs when the first one arrives."""

    on_first: Callable[[], None] | None = None
    events: list[tuple[float, str]] = field(default_factory=list[tuple[float, str]])

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if not self.events and self.on_first is not None:
            self.on_first()
        self.events.append((progress, message or ""))

    @property
    def last_message(self) -> str | None:
        return self.events[-1][1] if self.events else None


@dataclass
class Probe:
    """Worst event-loop lag seen by a task that sleeps ``interval`` again and again, and the
    peak RSS of ``process`` sampled on the way."""

    interval: float = 0.01
    process: psutil.Process | None = None
    worst_lag: float = 0.0
    peak_rss: int = 0

    def sample_rss(self) -> int:
        rss = rss_of(self.process or psutil.Process())
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    async def _run(self) -> None:
        while True:
            start = anyio.current_time()
            await anyio.sleep(self.interval)
            self.worst_lag = max(self.worst_lag, anyio.current_time() - start - self.interval)
            self.sample_rss()


@asynccontextmanager
async def probing(interval: float = 0.01, process: psutil.Process | None = None) -> AsyncIterator[Probe]:
    """Run a ``Probe`` in this event loop for the duration of the block."""
    probe = Probe(interval, process)
    async with anyio.create_task_group() as group:
        group.start_soon(probe._run)
        try:
            yield probe
        finally:
            group.cancel_scope.cancel()


def rss_of(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


MIB = 1024 * 1024
