"""What every route shares: recording, fault injection, auth and the vendors' error bodies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from .faults import Fault

if TYPE_CHECKING:
    from .emulator import Emulator

Handler = Callable[[Request], Awaitable[Response]]

_VTRIX_ERRORS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

# The vendors' own wording where their docs give it.
_MESSAGES = {
    ("wavespeed", 401): "Unauthorized: invalid authentication",
    ("vtrix", 401): "API key missing or invalid",
    ("vtrix", 403): "permission denied",
    ("vtrix", 429): "rate limit exceeded",
    ("vtrix", 500): "internal server error",
}


def endpoint(emu: Emulator, route: str, handler: Handler) -> Handler:
    """Wrap ``handler`` so the request is recorded and any fault injected for ``route`` applies."""

    async def run(request: Request) -> Response:
        emu.record_call(route, request, await request.body())
        fault = emu.next_fault(route)
        if fault is None:
            return await handler(request)
        match fault.kind:
            case "status":
                return fault_response(route, request.url.path, fault)
            case "malformed":
                return HTMLResponse("<html><body><h1>502 Bad Gateway</h1>oops</body></html>")
            case "delay":
                if not await _wait_for_client(request, fault.seconds):
                    # The client gave up: like a request that never arrived, it has no effect.
                    return Response(status_code=499)
                return await handler(request)
            case "drop" | "truncate":
                return CutResponse(await handler(request))
            case "slow":
                return SlowResponse(await handler(request), fault.seconds, fault.chunks)

    return run


class CutResponse(Response):
    """Announces the whole body in Content-Length, sends half of it, then stops.

    Under uvicorn the connection is closed when the app returns without finishing the
    response; in-process, ``EmulatorTransport`` notices the short body instead.
    """

    def __init__(self, inner: Response) -> None:
        super().__init__(inner.body, inner.status_code)
        self.raw_headers = list(inner.raw_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        part = bytes(self.body[: len(self.body) // 2])
        await send({"type": "http.response.body", "body": part, "more_body": True})


class SlowResponse(Response):
    """Sends the whole answer in ``chunks`` pieces, pausing ``seconds / chunks`` before each one."""

    def __init__(self, inner: Response, seconds: float, chunks: int) -> None:
        super().__init__(inner.body, inner.status_code)
        self.raw_headers = list(inner.raw_headers)
        self._pause = seconds / chunks
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self.body)
        size = -(-len(body) // self._chunks)
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                # A client that hangs up stops the trickle instead of leaving it to run on.
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            for index in range(self._chunks):
                await anyio.sleep(self._pause)
                part = body[index * size : (index + 1) * size]
                last = index == self._chunks - 1
                await send({"type": "http.response.body", "body": part, "more_body": not last})
            group.cancel_scope.cancel()


async def _wait_for_client(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the client disconnects instead."""
    gone = False
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal gone
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone = True
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await anyio.sleep(seconds)
        group.cancel_scope.cancel()
    return not gone


def fault_response(route: str, path: str, fault: Fault) -> Response:
    """The answer to a ``Fault.status``: the vendor's error shape unless the fault gives a body."""
    headers = {} if fault.retry_after is None else {"Retry-After": _seconds(fault.retry_after)}
    if fault.body is not None:
        if isinstance(fault.body, str | bytes):
            return Response(fault.body, fault.code, headers=headers, media_type="text/plain")
        return JSONResponse(fault.body, fault.code, headers=headers)
    vendor = vendor_of(route, path)
    message = _MESSAGES.get((vendor, fault.code)) or _phrase(fault.code)
    return error_response(vendor, fault.code, message, headers)


def vendor_of(route: str, path: str) -> str:
    """Which vendor's error shape a route answers with: "wavespeed", "vtrix" or "plain"."""
    if route.startswith("ws.") and route != "ws.upload_put":
        return "wavespeed"
    if route.startswith("vx."):
        return "vtrix"
    if route == "unknown" and path.startswith("/api/v3/"):
        return "wavespeed"
    if route == "unknown" and path.startswith("/model/"):
        return "vtrix"
    return "plain"


def error_response(vendor: str, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error in the vendor's documented body shape."""
    if vendor == "wavespeed":
        return ws_error(code, message, headers)
    if vendor == "vtrix":
        return vx_error(code, message, headers=headers)
    return PlainTextResponse(message, code, headers=headers)


def ws_error(code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """WaveSpeed's error envelope."""
    return JSONResponse({"code": code, "message": message, "data": None}, code, headers=headers)


def vx_error(
    code: int, message: str, error: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """Vtrix's error body: ``message`` plus a short ``error`` slug."""
    slug = error or _VTRIX_ERRORS.get(code) or _phrase(code).lower().replace(" ", "_")
    return JSONResponse({"message": message, "error": slug}, code, headers=headers)


def bearer_ok(request: Request, expected: str | None) -> bool:
    """True when the request carries ``Authorization: Bearer <expected>`` (any key if None)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return expected is None or token == expected


async def read_json(request: Request) -> tuple[bool, object]:
    """Parse the body as JSON: ``(True, value)``, or ``(False, None)`` when it is not JSON."""
    try:
        return True, json.loads(await request.body(), parse_constant=_no_constants)
    except ValueError:
        return False, None


def base_url(request: Request) -> str:
    """The request's own base URL without the trailing slash, for absolute links."""
    return str(request.base_url).rstrip("/")


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
