"""An in-process httpx transport that fails the way a socket would."""

from __future__ import annotations

import math

import anyio
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class EmulatorTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` plus two things a real connection does.

    - A response whose body is shorter than its Content-Length (``Fault.drop``/``truncate``)
      raises ``httpx.RemoteProtocolError``, as a peer closing mid-body would.
    - The request's read timeout bounds the whole exchange and raises ``httpx.ReadTimeout``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=_finish_responses(app))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        response: httpx.Response | None = None
        with anyio.move_on_after(math.inf if read_timeout is None else read_timeout):
            answer = await self._inner.handle_async_request(request)
            await answer.aread()
            response = answer
        if response is None:
            raise httpx.ReadTimeout("timed out", request=request)
        body = response.content
        declared = response.headers.get("content-length")
        if request.method != "HEAD" and declared is not None and int(declared) > len(body):
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            )
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _finish_responses(app: ASGIApp) -> ASGIApp:
    """Complete a response the app abandoned, which ``ASGITransport`` would otherwise reject."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        await app(scope, receive, tracking_send)
        if not finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return wrapped
