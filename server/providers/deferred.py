"""httpx's own transport, made on the first request instead of at start-up.

Building it builds its TLS context, which loads the CA bundle: tens of milliseconds (more on a busy
machine) that every start-up would pay before answering tools/list, although most sessions send
their first provider request much later, if ever.
"""

from __future__ import annotations

from typing import Any

import httpx


class DeferredTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncHTTPTransport(**options)`` created when the first request goes out."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._inner: httpx.AsyncHTTPTransport | None = None

    @property
    def started(self) -> bool:
        return self._inner is not None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # No await between the check and the assignment: one event loop makes exactly one transport.
        if self._inner is None:
            self._inner = httpx.AsyncHTTPTransport(**self._options)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


__all__ = ["DeferredTransport"]
