"""Streamable HTTP: safe to expose, and ready for replicas.

Listens on loopback by default. Any other address needs a bearer token (``WAN_MCP_HTTP_TOKEN``
or a ``verify_token`` hook): the server refuses to start without one, and every request that
lacks it gets 401. DNS-rebinding protection (Host/Origin allow-lists) is the SDK's; request bodies
are capped.

``stateless`` (the default with a PostgreSQL journal) keeps no session in the process, so any
replica behind a round-robin load balancer answers any request. With webhooks on, ``POST
/webhooks/wavespeed`` sits beside ``/mcp``: it is not behind the bearer token (WaveSpeed signs
its callbacks instead) and hands the raw body to ``WebhookHandler``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import ConfigError
from server.providers.webhooks import MAX_BODY_BYTES
from server.settings import WEBHOOK_PATH, HttpPolicy

log = logging.getLogger("wan_video_mcp.http")

TokenCheck = Callable[[str], Awaitable[bool]]
# (lower-cased headers, raw body) -> (HTTP status, short reason)
WebhookHandler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, str]]]


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: HTTP requests must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, check: TokenCheck) -> None:
        self._app = app
        self._check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or not await self._check(token.strip()):
            body = json.dumps({"error": "unauthorized", "message": "Send Authorization: Bearer <token>."})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="wan-video-mcp"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self._app(scope, receive, send)


def static_token(expected: str) -> TokenCheck:
    """A check against one configured token, in constant time."""
    wanted = expected.encode()

    async def check(token: str) -> bool:
        return hmac.compare_digest(token.encode(), wanted)

    return check


async def _answer(send: Send, status: int, payload: dict[str, Any]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


class WebhookRoute:
    """ASGI: ``POST`` at ``path`` reads the raw body (capped) for ``handler``; anything else goes on."""

    def __init__(self, app: ASGIApp, path: str, handler: WebhookHandler, max_body: int) -> None:
        self._app = app
        self._path = path
        self._handler = handler
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self._path:
            await self._app(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, {"error": "method not allowed"})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self._max_body:
                await _answer(send, 413, {"error": "body too large"})
                return
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status, reason = await self._handler(headers, bytes(body))
        await _answer(send, status, {"status": reason})


def build_http_app(
    server: MCPServer[Any],
    policy: HttpPolicy,
    host: str,
    *,
    verify_token: TokenCheck | None = None,
    webhook: WebhookHandler | None = None,
) -> ASGIApp:
    """The server's Streamable HTTP app (at ``/mcp``) with this policy applied.

    ``webhook`` answers ``POST /webhooks/wavespeed`` (outside the bearer token).

    Raises:
        ConfigError: a non-loopback ``host`` without a token or a ``verify_token`` hook.
    """
    check = verify_token
    if check is None and policy.token is not None:
        check = static_token(policy.token.get_secret_value())
    loopback = is_loopback(host)
    if check is None and not loopback:
        raise ConfigError(
            f"Refusing to serve HTTP on {host}, which other machines can reach, without a bearer token. "
            "Set WAN_MCP_HTTP_TOKEN to a long random secret (clients send 'Authorization: Bearer <it>'), "
            "or bind to 127.0.0.1."
        )
    security: TransportSecuritySettings | None = None
    if policy.allowed_hosts or policy.allowed_origins:
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(policy.allowed_hosts) or ["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=list(policy.allowed_origins),
        )
    elif not loopback:
        # Any Host is accepted (the bearer token guards the door); set WAN_MCP_HTTP_ALLOWED_HOSTS to pin it.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app: ASGIApp = server.streamable_http_app(
        host=host,
        transport_security=security,
        max_request_body_size=policy.max_body_bytes,
        stateless_http=policy.stateless,
    )
    if check is not None:
        app = BearerAuth(app, check)
    if webhook is not None:
        app = WebhookRoute(app, WEBHOOK_PATH, webhook, MAX_BODY_BYTES)
    return app


def run_http(
    server: MCPServer[Any], policy: HttpPolicy, host: str, port: int, *, webhook: WebhookHandler | None = None
) -> None:
    """Serve until interrupted; logs go to stderr through ``logging``."""
    import uvicorn

    app = build_http_app(server, policy, host, webhook=webhook)
    log.info("serving MCP over Streamable HTTP at http://%s:%d/mcp", host, port)
    # Keep idle connections well past clients' own expiry (httpx: 5 s), so neither side closes a
    # connection the other is about to reuse.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
    )
