"""Start-up: spawn the stdio server and time the answer to tools/list, beside the SDK's floor.

The floor is a minimal ``MCPServer`` with one tool, spawned and asked the same way in the same run
(alternating, so both see the same machine noise). Prints the medians and their ratio.

Both start from bytecode, as an installed package does: the warm-up runs write the caches an
editable checkout may lack (with ``PYTHONDONTWRITEBYTECODE`` set, every start would compile every
module of ours that has none, while the SDK's were compiled when it was installed).

    .venv/bin/python bench/startup.py [--runs 31]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MODELS

MINIMAL = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("floor")


@server.tool()
def ping(text: str) -> str:
    \"\"\"Echo.\"\"\"
    return text


server.run()
"""

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
# 2026-07-28 has no handshake: the one request carries the version and capabilities in _meta.
MODERN_LIST = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/list",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}
ERAS = {"legacy": (INITIALIZE, INITIALIZED, LIST), "modern": (MODERN_LIST,)}
TOOLS_LIST_BUDGET = 9216


def time_tools_list(command: list[str], env: dict[str, str], era: str = "legacy") -> tuple[float, int]:
    """Seconds from spawn to the tools/list answer, and that answer's size in bytes.

    The size is the answer's whole JSON-RPC line as the server wrote it (without the newline).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    payload = "".join(json.dumps(m) + "\n" for m in ERAS[era])
    proc.stdin.write(payload.encode())
    proc.stdin.flush()
    size = 0
    for line in proc.stdout:
        message = json.loads(line)
        if message.get("id") == 2:
            size = len(line.rstrip(b"\n"))
            break
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description="Start-up time beside the SDK's floor.")
    parser.add_argument("--runs", type=int, default=31)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor_script = Path(tmp) / "floor.py"
        floor_script.write_text(MINIMAL)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED", "VTRIX", "WAN_MCP"))}
        env["WAN_MCP_HOME"] = str(Path(tmp) / "home")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        ours_cmd = [sys.executable, "-m", "server", "serve", "--log-level", "WARNING"]
        floor_cmd = [sys.executable, str(floor_script)]
        time_tools_list(ours_cmd, env)  # warm the file and bytecode caches
        time_tools_list(floor_cmd, env)
        ours: list[float] = []
        floor: list[float] = []
        for _ in range(args.runs):
            ours.append(time_tools_list(ours_cmd, env)[0])
            floor.append(time_tools_list(floor_cmd, env)[0])
        sizes = {era: time_tools_list(ours_cmd, env, era)[1] for era in ERAS}
        alone = {
            slug: time_tools_list(ours_cmd, {**env, "WAN_MCP_MODELS": slug}, "modern")[1] for slug in MODELS
        }
    o, f = statistics.median(ours), statistics.median(floor)
    print(f"runs: {args.runs} each, alternating")
    print(f"wan-video-mcp   spawn -> tools/list: median {o * 1000:7.1f} ms")
    print(f"minimal server  spawn -> tools/list: median {f * 1000:7.1f} ms")
    print(f"ratio: {o / f:.2f} (target <= 1.10)")
    for era, size in sizes.items():
        print(f"tools/list answer, {era:<6}: {size:,} bytes of JSON (target <= {TOOLS_LIST_BUDGET:,})")
    print("tools/list answer (modern) with WAN_MCP_MODELS set to one model:")
    for slug, size in sorted(alone.items(), key=lambda item: item[1]):
        print(f"  {slug:<32} {size:,} bytes")


if __name__ == "__main__":
    main()
