"""Several server processes on one journal, as a hosted deployment runs them: replicas started as
``wan-video-mcp serve --transport http`` subprocesses, and a round-robin proxy in front.

The proxy is a plain ASGI reverse proxy (each request to the next replica in turn, responses
streamed, so SSE progress passes through): a stand-in for nginx or Caddy without affinity.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.common import VX_KEY, WS_KEY

_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"host", b"content-length"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    """One server process."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def replica_env(
    home: Path,
    base_url: str,
    database_url: str | None,
    *,
    lease_seconds: float = 2.0,
    poll_interval: float = 0.05,
    keys: tuple[str, str] = (WS_KEY, VX_KEY),
) -> dict[str, str]:
    """The environment of a replica: both vendors at ``base_url``, the journal at ``database_url``."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "WAVESPEED_API_KEY": keys[0],
        "VTRIX_API_KEY": keys[1],
        "WAVESPEED_BASE_URL": base_url,
        "VTRIX_BASE_URL": base_url,
        "WAN_MCP_HOME": str(home),
        "WAN_MCP_ALLOWED_DIRS": str(home),
        "WAN_MCP_POLL_INTERVAL": str(poll_interval),
        "WAN_MCP_PROVIDER_RATE": "0",
        "WAN_MCP_LEASE_SECONDS": str(lease_seconds),
    }
    if database_url is not None:
        env["WAN_MCP_DATABASE_URL"] = database_url
    return env


async def start_replica(env: Mapping[str, str], logs: Path, *, webhooks: bool = False) -> Replica:
    """Start one replica on a free port and wait (at most 30 s) until it accepts connections."""
    port = free_port()
    env = dict(env)
    if webhooks:
        env["WAN_MCP_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    logs.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before the process starts
    log = logs / f"replica-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, then only signalled
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                "--transport",
                "http",
                "--port",
                str(port),
                "--log-level",
                "INFO",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    replica = Replica(port, process, log, env)
    deadline = time.monotonic() + 30
    while True:
        if not replica.alive:
            raise RuntimeError(f"replica exited at start:\n{log.read_text()[-2000:]}")
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                replica.kill()
                raise RuntimeError(
                    f"replica did not listen within 30 s:\n{log.read_text()[-2000:]}"
                ) from None
            await anyio.sleep(0.05)
        else:
            await stream.aclose()
            break
    # Listening comes after the lifespan (journal open, leases) has started.
    return replica


@asynccontextmanager
async def fleet(
    count: int, env: Mapping[str, str], logs: Path, *, webhooks: bool = False
) -> AsyncIterator[list[Replica]]:
    """``count`` replicas started together; every one still alive is stopped (SIGTERM) afterwards."""
    replicas: list[Replica] = []
    try:
        async with anyio.create_task_group() as group:

            async def one() -> None:
                replicas.append(await start_replica(env, logs, webhooks=webhooks))

            for _ in range(count):
                group.start_soon(one)
        yield replicas
    finally:
        stop(replicas)


def stop(replicas: list[Replica]) -> None:
    """SIGTERM every replica still alive, SIGKILL any that has not stopped 10 s later."""
    for replica in replicas:
        if replica.alive:
            replica.process.terminate()
    for replica in replicas:
        try:
            replica.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            replica.kill()


class RoundRobin:
    """ASGI reverse proxy: each HTTP request to the next upstream, the response streamed back."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self._next = itertools.cycle(range(len(upstreams)))
        self.sent: list[int] = []
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        index = next(self._next)
        self.sent.append(index)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        url = (
            self.upstreams[index]
            + scope["path"]
            + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        )
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        response = await self._client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
