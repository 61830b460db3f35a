"""Run the emulator under uvicorn on a local socket, inside the caller's event loop."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager

import anyio
import uvicorn

from .emulator import Emulator

_ABANDONED = "ASGI callable returned without completing response."


class _QuietDrops(logging.Filter):
    """Hide uvicorn's complaint about the responses ``Fault.drop`` cuts short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _ABANDONED


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None]:
        # The host process (maybe an MCP server) owns SIGINT/SIGTERM, not the emulator.
        yield


@asynccontextmanager
async def serve_emulator(
    emu: Emulator, host: str = "127.0.0.1", port: int = 0, *, shutdown_timeout: float = 5.0
) -> AsyncGenerator[str]:
    """Serve ``emu.app`` on ``host:port`` (0: any free port) and yield its base URL.

    The socket is bound and listening before this yields, so requests can be sent at once.
    uvicorn writes nothing to stdout. On exit the server stops gracefully, waiting at most
    ``shutdown_timeout`` seconds before it is cancelled.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn writes an answer's head and body apart; without this each waits ~40 ms on Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
        bound_port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            emu.app,
            log_config=None,
            access_log=False,
            log_level="warning",
            lifespan="off",
            http="h11",
            ws="none",
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, int(shutdown_timeout) - 1),
        )
        server = _Server(config)
        stopped = anyio.Event()
        quiet = _QuietDrops()
        logging.getLogger("uvicorn.error").addFilter(quiet)

        async def run() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                stopped.set()

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            emu.tasks = group
            try:
                yield (
                    f"http://[{host}]:{bound_port}"
                    if family == socket.AF_INET6
                    else f"http://{host}:{bound_port}"
                )
            finally:
                server.should_exit = True
                emu.tasks = None
                with anyio.move_on_after(shutdown_timeout, shield=True):
                    await stopped.wait()
                group.cancel_scope.cancel()
                logging.getLogger("uvicorn.error").removeFilter(quiet)
    finally:
        sock.close()
