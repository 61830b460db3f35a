"""A continue-and-stitch session in the sandbox, driven by a real MCP client over stdio.

    .venv/bin/python scripts/continue_and_stitch.py [--sheet docs/contact-sheet.jpg]

Starts ``wan-video-mcp serve --sandbox`` (free, no key) with its data in a temporary folder, makes
a shot from a drawn sample picture, continues it on another model from its last frame, stitches
the two with a crossfade, and prints every tool call with what came back (the README shows one
run). ``--sheet`` keeps the continued shot's contact sheet.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent

from server.demo import make_sample_image

SHOWN = ("job_id", "status", "notes", "last_frame", "contact_sheet", "stitch_id", "mode", "cost_usd", "uri")


def show_call(name: str, arguments: dict[str, Any], result: CallToolResult) -> None:
    print(f"\n> {name}({json.dumps(arguments)})")  # noqa: T201 - this script's output
    for block in result.content:
        if isinstance(block, TextContent):
            print(f"  text: {block.text}")  # noqa: T201
        elif isinstance(block, ResourceLink):
            print(f"  resource_link: {block.uri} ({block.mime_type})")  # noqa: T201
        elif isinstance(block, ImageContent):
            size = len(base64.b64decode(block.data))
            print(f"  image: {block.mime_type}, {size // 1024} KB")  # noqa: T201
    record = result.structured_content or {}
    shown = {k: record[k] for k in SHOWN if k in record}
    if "video" in record:
        shown["video"] = {k: record["video"][k] for k in ("frames", "duration_seconds", "width", "height")}
    print(f"  structured: {json.dumps(shown, indent=None)}")  # noqa: T201


async def session(home: Path, sheet: Path | None) -> None:
    picture = make_sample_image(home / "sample-sunset.png")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server", "serve", "--sandbox", "--log-level", "WARNING"],
        env={"WAN_MCP_HOME": str(home), "WAN_MCP_ALLOWED_DIRS": str(home), "WAN_MCP_POLL_INTERVAL": "0.2"},
    )
    async with Client(stdio_client(params)) as client:

        async def call(name: str, arguments: dict[str, Any]) -> CallToolResult:
            with anyio.fail_after(120):
                result = await client.call_tool(name, arguments)
            show_call(
                name,
                {
                    k: (Path(v).name if k == "image" and v == str(picture) else v)
                    for k, v in arguments.items()
                },
                result,
            )
            return result

        first = await call(
            "wan22_i2v_480p_ultra_fast_generate_video",
            {"image": str(picture), "prompt": "the sun sinks behind the mountains, slow dolly-in"},
        )
        first_id = (first.structured_content or {})["job_id"]
        second = await call(
            "wan22_i2v_flash_generate_video",
            {"image": f"wan-video://jobs/{first_id}/frames/last", "prompt": "dusk falls over the lake"},
        )
        second_id = (second.structured_content or {})["job_id"]
        await call("stitch_videos", {"job_ids": [first_id, second_id], "crossfade_seconds": 0.5})
        if sheet is not None:
            [image] = [b for b in second.content if isinstance(b, ImageContent)]
            await anyio.Path(sheet).write_bytes(base64.b64decode(image.data))
            print(f"\ncontact sheet of {second_id} saved as {sheet}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", type=Path, help="where to keep the continued shot's contact sheet")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wan-session-") as home:
        anyio.run(session, Path(home), options.sheet)


if __name__ == "__main__":
    main()
