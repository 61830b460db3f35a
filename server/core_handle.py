"""The core as the MCP server holds it: opened in the background, awaited by what needs it.

``initialize`` and the listings (tools, resources, prompts) need no core, so the server answers
them while it opens: the journal, the HTTP client, the pollers and the modules behind them cost
more than everything else the first answer needs. A call that needs the core waits for it (and
starts the opening if it has not begun); otherwise it opens ``OPEN_AFTER_SECONDS`` after start, so
live jobs are followed again without any call.

A core that cannot open (an unreachable PostgreSQL journal, say) is logged, and every call that
needs it is refused with that reason. Stopping the server instead would not end a stdio server:
by then the SDK's reader is blocked reading the client's next line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, cast

import anyio

from server.errors import WanMcpError

if TYPE_CHECKING:
    from server.core import Core

log = logging.getLogger("wan_video_mcp")

# Long enough for a client's opening exchange (initialize, tools/list) to be answered first.
OPEN_AFTER_SECONDS = 0.25

CoreOpener = Callable[[], AbstractAsyncContextManager["Core"]]


class CoreHandle:
    """The running core, or the promise of it: what the tools find as the lifespan context."""

    def __init__(self) -> None:
        self._core: Core | None = None
        self._wanted = anyio.Event()
        self._settled = anyio.Event()
        self._stop = anyio.Event()
        self.error: BaseException | None = None

    @property
    def core(self) -> Core | None:
        """The core once it is open (None before, or when opening it failed)."""
        return self._core

    async def get(self) -> Core:
        """The core, opened now if it is not yet.

        Raises:
            WanMcpError: the core could not be opened, or the server is stopping.
        """
        self._wanted.set()
        await self._settled.wait()
        if self._core is not None:
            return self._core
        if self.error is None:
            raise WanMcpError("The server is stopping; nothing was sent and nothing was charged.")
        raise WanMcpError(
            f"The server could not start: {_describe(self.error)} Nothing was sent and nothing was "
            "charged; restart the server once this is fixed."
        )

    async def run(self, opener: CoreOpener) -> None:
        """Open the core when it is first wanted (or after a moment) and hold it until ``close``.

        A failure to open is kept in ``error`` (and logged); a failure of the running core
        propagates, and stops the server as it always has.
        """
        with anyio.move_on_after(OPEN_AFTER_SECONDS):
            await self._wanted.wait()
        try:
            if self._stop.is_set():  # the server stopped before anything needed the core
                return
            async with opener() as core:
                self._core = core
                self._settled.set()
                await self._stop.wait()
        except Exception as exc:
            if self._core is not None:
                raise
            self.error = _reason(exc)
            if isinstance(self.error, WanMcpError):
                log.error("the server could not start: %s", self.error)
            else:
                log.exception("the server could not start")
        finally:
            self._settled.set()

    def close(self) -> None:
        """Let ``run`` close the core (in order, as ``open_core`` does), or not open it at all."""
        self._stop.set()
        self._wanted.set()


def _reason(exc: BaseException) -> BaseException:
    """The failure itself, out of the task groups it came through (ours first, else the first)."""
    while isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        inner = group.exceptions
        exc = next((e for e in inner if isinstance(e, WanMcpError)), inner[0])
    return exc


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return (
            f"{error.strerror or error}: {error.filename}. Check that WAN_MCP_HOME and "
            "WAN_MCP_OUTPUT_DIR name folders this user can write."
        )
    text = str(error).strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
