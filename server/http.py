"""Streamable HTTP: safe to expose.

Listens on loopback by default. Any other address needs a bearer token (``WAN_MCP_HTTP_TOKEN``
or a ``verify_token`` hook): the server refuses to start without one, and every request that
lacks it gets 401. DNS-rebinding protection (Host/Origin allow-lists) is the SDK's; request bodies
are capped.
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
from server.settings import HttpPolicy

log = logging.getLogger("wan_video_mcp.http")

TokenCheck = Callable[[str], Awaitable[bool]]


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


def build_http_app(
    server: MCPServer[Any],
    policy: HttpPolicy,
    host: str,
    *,
    verify_token: TokenCheck | None = None,
) -> ASGIApp:
    """The server's Streamable HTTP app (at ``/mcp``) with this policy applied.

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
    app = server.streamable_http_app(
        host=host, transport_security=security, max_request_body_size=policy.max_body_bytes
    )
    return BearerAuth(app, check) if check is not None else app


def run_http(server: MCPServer[Any], policy: HttpPolicy, host: str, port: int) -> None:
    """Serve until interrupted; logs go to stderr through ``logging``."""
    import uvicorn

    app = build_http_app(server, policy, host)
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
