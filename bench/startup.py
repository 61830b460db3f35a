"""Start-up: spawn the stdio server and time the answer to tools/list, beside the SDK's floor.

The floor is a minimal ``MCPServer`` with one tool, spawned and asked the same way in the same run
(alternating, so both see the same machine noise). Prints the medians and their ratio.

    .venv/bin/python bench/startup.py [--runs 15]
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


def time_tools_list(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds from spawn to the tools/list answer, and that answer's size in bytes."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    payload = "".join(json.dumps(m) + "\n" for m in (INITIALIZE, INITIALIZED, LIST))
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
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description="Start-up time beside the SDK's floor.")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor_script = Path(tmp) / "floor.py"
        floor_script.write_text(MINIMAL)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED", "VTRIX", "WAN_MCP"))}
        env["WAN_MCP_HOME"] = str(Path(tmp) / "home")
        ours_cmd = [sys.executable, "-m", "server", "serve", "--log-level", "WARNING"]
        floor_cmd = [sys.executable, str(floor_script)]
        time_tools_list(ours_cmd, env)  # warm the file cache and the journal's first creation
        time_tools_list(floor_cmd, env)
        ours: list[float] = []
        floor: list[float] = []
        size = 0
        for _ in range(args.runs):
            elapsed, size = time_tools_list(ours_cmd, env)
            ours.append(elapsed)
            floor.append(time_tools_list(floor_cmd, env)[0])
    o, f = statistics.median(ours), statistics.median(floor)
    print(f"runs: {args.runs} each, alternating")
    print(f"wan-video-mcp   spawn -> tools/list: median {o * 1000:7.1f} ms")
    print(f"minimal server  spawn -> tools/list: median {f * 1000:7.1f} ms")
    print(f"ratio: {o / f:.2f} (target <= 1.30)")
    print(f"tools/list answer: {size} bytes of JSON (target <= 12 KB)")


if __name__ == "__main__":
    main()
