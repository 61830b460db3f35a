"""Bad input: Hypothesis throws arbitrary and adversarial arguments at every tool.

For each tool (generate and estimate for every model, get_result, list_jobs), arguments are drawn
as its own parameter names and random extra names mapped to arbitrary JSON (nested structures,
huge and NaN/infinite numbers, unicode) and to adversarial text: huge strings, data: URIs with
garbage, paths with ``..`` and NUL bytes, devices, pipes, links out of the allowed folder, the
journal itself. Half the time they are laid over a valid call, so the odd value meets the code
behind the first check too.

The promise checked for each call: it answers within ``CALL_LIMIT``; an error has a message of
its own (not empty, not the SDK's bare "Error executing tool X", which means an exception the
tool did not expect); an error that is not the provider's own refusal sent no request at all; and
no error left a job at the provider.

Hypothesis is deterministic here (``derandomize``, no example database) and bounded.
"""

from __future__ import annotations

import base64
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from bench.common import (
    CAT_URL,
    bench_settings,
    is_crash,
    new_emulator,
    png_data_uri,
    record_of,
    stdio_params,
    stdio_session,
    text_of,
)
from server.app import build_server
from server.sandbox import Emulator, serve_emulator

CALL_LIMIT = 30.0
CRASHED = "an unexpected exception in the server"
# An error after requests were sent must be the provider's refusal, and say whose.
_PROVIDER_WORDS = ("wavespeed", "vtrix")
_BACKGROUND = frozenset({"ws.result", "vx.task", "file"})


@dataclass
class FuzzReport:
    """Cases tried per tool, and what broke.

    ``crashes``: each failure Hypothesis settled on (its smallest example), one per bug and tool;
    ``problems``: every failing call seen on the way; ``known``: calls that hit a ``KNOWN_BUGS``
    entry, counted apart so the run still hunts for new ones.
    """

    transport: str
    cases: Counter[str] = field(default_factory=Counter[str])
    errors: int = 0
    accepted: int = 0
    crashes: list[str] = field(default_factory=list[str])
    problems: list[str] = field(default_factory=list[str])
    known: Counter[str] = field(default_factory=Counter[str])
    seconds: float = 0.0

    @property
    def tried(self) -> int:
        return sum(self.cases.values())


@dataclass(frozen=True)
class KnownBug:
    """A crash already reported, with the xfail test that shows it; remove it once fixed."""

    name: str
    test: str
    matches: Callable[[str, dict[str, Any]], bool]


# Crashes already reported, with the test that shows each; empty while none is open.
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def adversarial_files(home: Path) -> list[str]:
    """Paths inside the allowed folder that an image reader must refuse without trouble."""
    home.mkdir(parents=True, exist_ok=True)
    made: list[str] = []

    def make(name: str, build: Callable[[Path], object]) -> None:
        path = home / name
        if not path.exists() and not path.is_symlink():
            build(path)
        made.append(str(path))

    make("empty.png", lambda p: p.write_bytes(b""))
    make("garbage.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200)))
    make("huge.png", lambda p: _sparse(p, 64 * 1024 * 1024 * 1024))
    make("fifo.png", lambda p: os.mkfifo(p))
    make("zero.png", lambda p: p.symlink_to("/dev/zero"))
    make("passwd.png", lambda p: p.symlink_to("/etc/passwd"))
    make("folder.png", lambda p: p.mkdir())
    made.append(str(home / "jobs.sqlite3"))
    made.append(str(home / ".." / ".." / "etc" / "passwd"))
    made.append(str(home / "videos" / ".." / ".." / "outside.png"))
    made.append(f"file://{home}/garbage.png")
    return made


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as file:
        file.truncate(size)


def adversarial_text(home: Path, *, huge_size: int = 30_000_000) -> st.SearchStrategy[str]:
    """Text meant to hurt: huge, NUL bytes, traversal, devices, data: URIs with garbage.

    The biggest strings are ``huge_size`` characters (a data: URI that size is over every
    model's limit; a smaller one keeps a run through a pipe quick).
    """
    huge = st.builds(
        lambda piece, count: piece * count,
        st.sampled_from(["a", "é", "😀", "\x00", " ", "../", "%00", "\u202e"]),
        st.integers(1_000, min(200_000, huge_size)),
    )
    payloads = st.one_of(
        st.text(max_size=40),
        st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        st.sampled_from(
            [
                png_data_uri(8).partition(",")[2][:-8] + "!!!!",
                base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode(),
            ]
        ),
        # Built when drawn: a huge value in a strategy's repr makes Hypothesis warn.
        st.integers(huge_size * 9 // 10, huge_size).map(lambda n: "A" * n),
    )
    data_uris = st.builds(
        lambda mime, encoding, payload: f"data:{mime}{encoding},{payload}",
        st.sampled_from(["image/png", "image/jpeg", "image/svg+xml", "text/html", "", "image/png;x=1"]),
        st.sampled_from([";base64", "", ";base64;charset=utf-8", ";BASE64"]),
        payloads,
    )
    paths = st.one_of(
        st.sampled_from(
            [
                *adversarial_files(home),
                "../../../../etc/passwd",
                "/etc/passwd",
                "/dev/zero",
                "/proc/self/environ",
                "~/../../etc/shadow",
                "relative/../image.png",
                "nul\x00byte.png",
                f"{home}/nul\x00byte.png",
                "file:///etc/passwd",
                "file://%2e%2e/%00",
                "\\\\server\\share\\x.png",
                "C:\\Windows\\win.ini",
                "http://127.0.0.1:1/x.png",
                "https://169.254.169.254/latest/meta-data",
                "https://",
                "https://[::1]/x.png",
                "ftp://example.com/x.png",
                "javascript:alert(1)",
                "",
                " ",
            ]
        ),
        st.lists(st.sampled_from(["..", ".", "x.png", "\x00", "~", "", str(home)]), max_size=8).map("/".join),
    )
    return st.one_of(huge, data_uris, paths, st.text())


def json_values(home: Path, huge_size: int) -> st.SearchStrategy[Any]:
    """Arbitrary JSON, including NaN and infinities, with adversarial text among the leaves."""
    numbers = st.one_of(
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 2**31, 2**63, 1e308, -0.0, 5, 8, 10]),
    )
    leaves = st.one_of(
        st.none(), st.booleans(), numbers, st.text(max_size=30), adversarial_text(home, huge_size=huge_size)
    )
    return st.recursive(leaves, _nested, max_leaves=8)


def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function: Hypothesis reads an extend function's source to check that it recurses,
    # which a lambda inside a call spanning several lines can defeat.
    return st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    )


def tool_arguments(
    home: Path, names: list[str], valid: dict[str, Any], huge_size: int
) -> st.SearchStrategy[dict[str, Any]]:
    """A tool's arguments: its own names and random ones mapped to bad values (images get
    adversarial text more often), maybe laid over a valid call."""
    keys = st.one_of(st.sampled_from(names), st.text(max_size=20)) if names else st.text(max_size=20)
    anything = st.dictionaries(keys, json_values(home, huge_size), max_size=6)
    images = {n: adversarial_text(home, huge_size=huge_size) for n in names if n in ("image", "last_image")}
    aimed = st.fixed_dictionaries({}, optional=images)
    return st.builds(
        lambda base, at_images, change: {**base, **at_images, **change},
        st.sampled_from([{}, valid]),
        aimed,
        anything,
    )


@dataclass(frozen=True)
class ToolInfo:
    """A tool as listed: its name, its parameter names, and a valid call to lay bad values over."""

    name: str
    parameters: list[str]
    valid: dict[str, Any]


def _valid_arguments(tool: str) -> dict[str, Any]:
    if tool.endswith("_generate_video"):
        return {"image": CAT_URL, "prompt": "a cat turns its head", "wait_seconds": 0}
    if tool == "get_result":
        return {"job_id": "wan22_i2v-000000000000", "wait_seconds": 0}
    return {}


@dataclass
class Fuzzer:
    """Drives a client (inside ``portal``'s event loop) with Hypothesis, one tool at a time."""

    portal: BlockingPortal
    client: Client
    emulator: Emulator
    home: Path
    report: FuzzReport
    huge_size: int = 30_000_000

    def run(self, examples_per_tool: int) -> None:
        """Every tool the client lists, ``examples_per_tool`` cases each."""
        for tool in self.portal.call(self.client.list_tools).tools:
            info = ToolInfo(
                tool.name, sorted(tool.input_schema.get("properties", {})), _valid_arguments(tool.name)
            )
            self._one_tool(info, examples_per_tool)

    def _one_tool(self, tool: ToolInfo, examples: int) -> None:
        report = self.report

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )
        @given(arguments=tool_arguments(self.home, tool.parameters, tool.valid, self.huge_size))
        def check(arguments: dict[str, Any]) -> None:
            report.cases[tool.name] += 1
            problem = self._problem(tool.name, arguments)
            if problem is None:
                return
            known = (b for b in KNOWN_BUGS if problem.startswith(CRASHED) and b.matches(tool.name, arguments))
            bug = next(known, None)
            if bug is not None:
                report.known[bug.name] += 1
                return
            report.problems.append(f"{tool.name}({_short(arguments)}): {problem}")
            raise AssertionError(f"{tool.name}: {problem}")

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - Hypothesis's verdict (one failure or a group) goes in the report
            notes = "\n".join(getattr(exc, "__notes__", []))
            report.crashes.append(f"{tool.name}: {exc}\n{notes}".strip())

    def _problem(self, tool: str, arguments: dict[str, Any]) -> str | None:
        """What is wrong with the answer to one call (None: nothing)."""
        emulator, report = self.emulator, self.report
        calls, jobs = len(emulator.calls), len(emulator.jobs)

        async def call() -> CallToolResult | None:
            with anyio.move_on_after(CALL_LIMIT):
                return await self.client.call_tool(tool, arguments)
            return None

        try:
            result = self.portal.call(call)
        except MCPError as exc:
            return f"a protocol error instead of a tool result: {exc!r}"
        if result is None:
            return f"no answer in {CALL_LIMIT:.0f} s"
        text = text_of(result)
        if not result.is_error:
            report.accepted += 1
            return None
        report.errors += 1
        if is_crash(text):
            return f"{CRASHED}: {text!r}"
        record = record_of(result) or {}
        # Status polls and downloads belong to earlier jobs, followed in the background.
        sent = [c.route for c in emulator.calls[calls:] if c.route not in _BACKGROUND]
        if sent and not any(word in text.lower() for word in _PROVIDER_WORDS):
            return f"requests {sorted(set(sent))} were sent for an error not the provider's: {text[:200]!r}"
        if len(emulator.jobs) > jobs and record.get("status") != "failed":
            return f"the provider got a job but the call failed: {text[:200]!r}"
        return None


def _short(arguments: dict[str, Any]) -> str:
    shown = {
        k: v if not isinstance(v, str) or len(v) < 60 else f"{v[:40]}...({len(v)})"
        for k, v in arguments.items()
    }
    return repr(shown)[:400]


def fuzz_in_memory(home: Path, *, examples_per_tool: int = 40) -> FuzzReport:
    """Every tool through the in-memory client, the emulator mounted in-process."""
    report = FuzzReport("in-memory")
    started = time.perf_counter()
    emulator = new_emulator()
    server = build_server(bench_settings(home, default_wait_seconds=0.0), transport=emulator.transport())
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(Client(server)) as client,
    ):
        try:
            Fuzzer(portal, client, emulator, home, report).run(examples_per_tool)
        finally:
            report.seconds = time.perf_counter() - started
    return report


def fuzz_stdio(home: Path, *, examples_per_tool: int = 10) -> FuzzReport:
    """Every tool through a stdio server process: its stdout must stay a clean MCP stream.

    Strings stay under 2 MB here: what a pipe does with 30 MB is slow, and the server's handling
    of it is the in-memory run's business.
    """
    report = FuzzReport("stdio")
    started = time.perf_counter()
    emulator = new_emulator()
    with start_blocking_portal(backend="asyncio") as portal, ExitStack() as stack:
        base_url = stack.enter_context(portal.wrap_async_context_manager(serve_emulator(emulator)))
        params = stdio_params(home, base_url, poll_interval=0, log_level="CRITICAL")
        client, _ = stack.enter_context(portal.wrap_async_context_manager(stdio_session(params)))
        try:
            Fuzzer(portal, client, emulator, home, report, huge_size=2_000_000).run(examples_per_tool)
            # Still speaking clean MCP after all of it.
            if not portal.call(client.list_tools).tools:
                report.crashes.append("the server listed no tools after the run")
        finally:
            report.seconds = time.perf_counter() - started
    return report
