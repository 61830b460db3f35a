"""A mock MCP Apps host for the browser tests: a page that loads the player into a sandboxed iframe
(``srcdoc``, with the spec's default CSP injected as VS Code does), speaks the postMessage dialect
and hands the player's ``tools/call`` and ``resources/read`` to the real server through an SDK
client session that advertises the Apps extension."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.shared.exceptions import MCPError
from playwright.async_api import Browser, ConsoleMessage, FrameLocator, Page, async_playwright

from tools.player import PLAYER_URI

# The spec's default for a resource that declares no csp: nothing from the network, inline code,
# images and media from data: only.
DEFAULT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "media-src 'self' data:; font-src 'self'; connect-src 'none'; frame-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
APPS_CLIENT = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mock host</title>
<style>body{margin:0;background:#f6f6f8} iframe{border:0;width:560px;height:200px;display:block}</style>
</head><body><iframe id="app" sandbox="allow-scripts" title="player"></iframe>
<script>
const frame = document.getElementById("app");
window.appMessages = [];   // every message the app sent, in order
window.hostSent = [];      // every message the host sent
let call = null, nextId = 1000;
const send = (m) => { window.hostSent.push(m); frame.contentWindow.postMessage(m, "*"); };
const answer = (id, result) => send({jsonrpc: "2.0", id, result});
const forward = async (id, origin, method, params) => {
  const out = await window.mcpForward(origin, method, params);
  if (out && out.__error) send({jsonrpc: "2.0", id, error: {code: -32603, message: out.__error}});
  else send({jsonrpc: "2.0", id, result: out});
};
window.teardown = () => send({jsonrpc: "2.0", id: nextId++, method: "ui/resource-teardown",
                              params: {reason: "test"}});
addEventListener("message", async ({source, data: m}) => {
  if (source !== frame.contentWindow) return;
  window.appMessages.push(m);
  if (m.method === "ui/initialize") {
    answer(m.id, {protocolVersion: "2026-01-26", hostInfo: {name: "mock-host", version: "0"},
      hostCapabilities: {serverTools: {}, serverResources: {}, updateModelContext: {text: {}}, logging: {}},
      hostContext: call.hostContext});
  } else if (m.method === "ui/notifications/initialized") {
    send({jsonrpc: "2.0", method: "ui/notifications/tool-input", params: {arguments: call.arguments}});
    const params = {name: call.tool, arguments: call.arguments};
    const result = await window.mcpForward("host", "tools/call", params);
    send({jsonrpc: "2.0", method: "ui/notifications/tool-result", params: result});
  } else if (m.method === "tools/call" || m.method === "resources/read") {
    forward(m.id, "app", m.method, m.params);
  } else if (m.method === "ui/update-model-context") {
    answer(m.id, {});
  } else if (m.id !== undefined && m.method !== undefined) {
    send({jsonrpc: "2.0", id: m.id, error: {code: -32601, message: "not offered by the mock host"}});
  }
});
window.startHost = (html, csp, tool, args, hostContext) => {
  call = {tool, arguments: args, hostContext};
  const meta = '<meta http-equiv="Content-Security-Policy" content="' + csp.replaceAll('"', "&quot;") + '">';
  frame.srcdoc = html.replace(/<head>/i, "<head>" + meta);
};
</script></body></html>"""


@dataclass
class Forwarded:
    origin: str  # "host": the host's own call; "app": asked for by the player
    method: str
    params: dict[str, Any]
    result: dict[str, Any]


@dataclass
class MockHost:
    """The page, the player's frame and what went through the host."""

    page: Page
    client: Client
    forwarded: list[Forwarded] = field(default_factory=list[Forwarded])
    console: list[str] = field(default_factory=list[str])

    @property
    def player(self) -> FrameLocator:
        return self.page.frame_locator("#app")

    def app_calls(self, tool: str) -> list[Forwarded]:
        return [f for f in self.forwarded if f.origin == "app" and f.params.get("name") == tool]

    async def forward(self, origin: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            if method == "tools/call":
                res: Any = await self.client.call_tool(params["name"], params.get("arguments") or {})
            else:
                res = await self.client.read_resource(params["uri"])
        except MCPError as exc:
            out: dict[str, Any] = {"__error": str(exc)}
        else:
            out = res.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.forwarded.append(Forwarded(origin, method, params, out))
        return out

    async def start(self, tool: str, arguments: dict[str, Any], theme: str = "light") -> None:
        html = (await self.client.read_resource(PLAYER_URI)).contents[0]
        text = getattr(html, "text", None)
        assert isinstance(text, str)
        context = {
            "theme": theme,
            "toolInfo": {"id": "call-1", "tool": {"name": tool}},
            "displayMode": "inline",
            "availableDisplayModes": ["inline"],
            "styles": {"variables": {"--color-ring-primary": "#6d4aff"}},
        }
        await self.page.evaluate(
            "([h, c, t, a, x]) => window.startHost(h, c, t, a, x)",
            [text, DEFAULT_CSP, tool, arguments, context],
        )

    async def app_messages(self) -> list[dict[str, Any]]:
        return await self.page.evaluate("() => window.appMessages")

    async def wait_for_app_message(self, predicate_js: str, timeout_s: float = 30) -> None:
        """Wait until an app message ``m`` satisfies the JavaScript expression ``predicate_js``."""
        await self.page.wait_for_function(
            f"() => window.appMessages.some((m) => {predicate_js})", timeout=timeout_s * 1000
        )

    async def player_logs(self, event: str) -> list[dict[str, Any]]:
        return [
            m["params"]["data"]
            for m in await self.app_messages()
            if m.get("method") == "notifications/message" and m["params"]["data"].get("event") == event
        ]


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium (``scripts/test`` installs it); no browser is downloaded."""
    path = shutil.which("chromium")
    assert path, "Debian's chromium is not installed: run scripts/test, or apt-get install -y chromium"
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            await instance.close()


@asynccontextmanager
async def mock_host(server: Any, chromium: Browser) -> AsyncIterator[MockHost]:
    """The host page, connected to ``server`` by a client session that advertises Apps."""
    async with Client(server, extensions=[APPS_CLIENT]) as client:
        page = await chromium.new_page(viewport={"width": 600, "height": 900})
        host = MockHost(page, client)

        def on_console(message: ConsoleMessage) -> None:
            host.console.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        await page.expose_function("mcpForward", host.forward)
        await page.set_content(HOST_PAGE)
        # The host follows the player's size-changed notifications, as hosts with flexible heights must.
        await page.evaluate(
            """() => addEventListener("message", ({data: m}) => {
                 if (m && m.method === "ui/notifications/size-changed" && m.params.height)
                   document.getElementById("app").style.height = m.params.height + "px";
               })"""
        )
        try:
            yield host
        finally:
            await page.close()


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1)[:2000]
