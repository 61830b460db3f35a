"""The ``wan-video-mcp`` command: ``serve`` (the default), ``demo`` and ``doctor``.

Over stdio, ``serve`` writes only MCP messages to stdout: logs go to stderr. ``demo`` and
``doctor`` are not MCP servers; they talk to the user on stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from server import __version__
from server.errors import ConfigError, WanMcpError
from server.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wan-video-mcp",
        description="MCP server for Wan 2.x image-to-video (WaveSpeed AI, Vtrix). "
        "With no sub-command it serves MCP over stdio.",
    )
    parser.add_argument("--version", action="version", version=f"wan-video-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{serve,demo,doctor,jobs}")
    serve = commands.add_parser("serve", help="run the MCP server (the default)")
    _serve_options(serve)
    _serve_options(parser)
    _demo_options(
        commands.add_parser(
            "demo",
            help="try it end to end: start the server, price and generate one video",
            description="Start the server as an MCP client would, price a video, generate it with a "
            "progress bar, and print where it is. Free in the sandbox (the default when no --image, "
            "--prompt or --model is given); with them and a key, it is a real, paid job that asks "
            "before spending.",
        )
    )
    doctor = commands.add_parser(
        "doctor",
        help="check the configuration, the keys and where files go",
        description="Show what is configured (keys only as set/unset), which models can run, "
        "whether each provider accepts its key, and where files go. Exit code 0 when at least one "
        "enabled model is usable.",
    )
    doctor.add_argument("--sandbox", action="store_true", help="check the server as --sandbox runs it")
    doctor.add_argument("--no-check", action="store_true", help="do not call the providers to test the keys")
    jobs = commands.add_parser(
        "jobs",
        help="list jobs with their estimated and reported cost, and totals per day and model",
        description="The spend ledger (the same as the list_jobs tool), read from the journal.",
    )
    jobs.add_argument("--status", choices=["queued", "running", "completed", "failed", "unconfirmed"])
    jobs.add_argument("--model", help="only this model's jobs")
    jobs.add_argument("--since", help="a length back from now (24h, 7d, 2w) or an ISO date")
    jobs.add_argument("--limit", type=int, default=50, help="jobs to list (totals cover every match)")
    return parser


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--sandbox", action="store_true", help="use the built-in provider emulator: no key, no cost"
    )
    parser.add_argument("--log-level", default=os.environ.get("WAN_MCP_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--allowed-dirs",
        nargs="*",
        metavar="DIR",
        help="folders local images may be read from, instead of WAN_MCP_ALLOWED_DIRS "
        "(~ and $VARS expanded; the Claude Desktop bundle passes its folder setting here)",
    )


def _demo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sandbox", action="store_true", help="use the built-in emulator (free)")
    parser.add_argument("--model", help="model slug (sandbox default: wan22_i2v_480p_ultra_fast)")
    parser.add_argument("--image", help="first frame: a local file, an https:// URL or a data: URI")
    parser.add_argument("--prompt", help="what should happen in the video")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before a paid job")
    parser.add_argument("--home", type=Path, help="job database and videos (default: WAN_MCP_HOME)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    level = args.log_level.upper() if command == "serve" else "WARNING"
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if command == "demo":
        from server.demo import DemoOptions, run_demo

        return run_demo(
            DemoOptions(
                sandbox=args.sandbox,
                model=args.model,
                image=args.image,
                prompt=args.prompt,
                yes=args.yes,
                home=args.home,
            )
        )
    if command == "doctor":
        from server.doctor import run_doctor

        return run_doctor(sandbox=args.sandbox, check_keys=not args.no_check)
    if command == "jobs":
        return _jobs(args.status, args.model, args.since, args.limit)
    try:
        settings = Settings.from_env()
        if args.sandbox:
            settings = settings.model_copy(update={"sandbox": True})
        if dirs := expand_dirs(args.allowed_dirs or ()):
            settings = settings.model_copy(update={"allowed_dirs": dirs})
        return _serve(settings, args.transport, args.host, args.port)
    except ConfigError as exc:
        logging.getLogger("wan_video_mcp").error("%s", exc)
        return 2


def expand_dirs(dirs: Sequence[str]) -> tuple[Path, ...]:
    """Folders as given on the command line, with ``~`` and ``$VAR``/``${VAR}`` expanded.

    A host that leaves ``${HOME}`` unexpanded in a default (a bundle's ``user_config``) still works.
    """
    return tuple(Path(os.path.expandvars(d)).expanduser() for d in dirs if d.strip())


def _serve(settings: Settings, transport: str, host: str, port: int) -> int:
    from server.app import CoreRef, build_server

    ref = CoreRef()
    server = build_server(settings, core_ref=ref)
    if transport == "http":
        from server.http import run_http

        webhook = ref.wavespeed_webhook if settings.webhook_url is not None else None
        run_http(server, settings.http, host, port, webhook=webhook)
    else:
        server.run()
    return 0


def _jobs(status: str | None, model: str | None, since: str | None, limit: int) -> int:
    import anyio

    from server.jobs.store import open_store
    from server.ledger import build_ledger, format_ledger, parse_since

    try:
        settings = Settings.from_env()
        after = parse_since(since)
    except WanMcpError as exc:
        sys.stderr.write(f"wan-video-mcp jobs: {exc}\n")
        return 2
    if settings.database_url is None and not settings.database_path.exists():
        sys.stdout.write(f"No jobs yet (no journal at {settings.database_path}).\n")  # stdout-ok
        return 0

    async def read() -> str:
        store = await open_store(settings)
        try:
            ledger = await build_ledger(
                store, settings.spend, status=status, model=model, since=after, limit=max(limit, 1)
            )
        finally:
            await store.close()
        return format_ledger(ledger)

    try:
        text = anyio.run(read)
    except WanMcpError as exc:
        sys.stderr.write(f"wan-video-mcp jobs: {exc}\n")
        return 2
    sys.stdout.write(text + "\n")  # stdout-ok
    return 0
