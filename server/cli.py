"""The ``wan-video-mcp`` command. Over stdio, stdout carries only MCP messages: logs go to stderr."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from server import __version__
from server.errors import ConfigError
from server.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wan-video-mcp", description="MCP server for Wan 2.x image-to-video (WaveSpeed AI, Vtrix)."
    )
    parser.add_argument("--version", action="version", version=f"wan-video-mcp {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the MCP server (the default)")
    _serve_options(serve)
    _serve_options(parser)
    return parser


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--sandbox", action="store_true", help="use the built-in provider emulator: no key, no cost"
    )
    parser.add_argument("--log-level", default=os.environ.get("WAN_MCP_LOG_LEVEL", "INFO"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if args.sandbox:
            settings = settings.model_copy(update={"sandbox": True})
        return _serve(settings, args.transport, args.host, args.port)
    except ConfigError as exc:
        logging.getLogger("wan_video_mcp").error("%s", exc)
        return 2


def _serve(settings: Settings, transport: str, host: str, port: int) -> int:
    from server.app import build_server

    server = build_server(settings)
    if transport == "http":
        server.run(transport="streamable-http", host=host, port=port)
    else:
        server.run()
    return 0
