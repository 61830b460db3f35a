"""Shared fixtures: settings built explicitly (never from the developer's environment), the
provider emulator mounted in-process, and the MCP server wired to it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bench.common import bench_settings
from server.sandbox import Emulator
from server.settings import PollPolicy, Settings

WS_KEY = "ws-test-key-0123456789"
VX_KEY = "vx-test-key-0123456789"
IN_PROCESS = "http://testserver"
# The emulator creates a job before it answers, so a lost submit can be settled at once.
FAST_POLL = PollPolicy(
    interval=0, max_interval=0, retry_base=0, retry_cap=0, heartbeat=0.2, reconcile_grace=0
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator() -> Emulator:
    emu = Emulator(wavespeed_key=WS_KEY, vtrix_key=VX_KEY)
    emu.render_scale = 0.25
    emu.fps = 8
    return emu


def make_settings(home: Path, base_url: str = IN_PROCESS, **changes: object) -> Settings:
    """Settings for a test: keys set, both providers at ``base_url``, zero poll intervals."""
    values: dict[str, object] = {
        "wavespeed_api_key": SecretStr(WS_KEY),
        "vtrix_api_key": SecretStr(VX_KEY),
        "poll": FAST_POLL,
        **changes,
    }
    return bench_settings(home, base_url, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
async def loopback_emulator(emulator: Emulator) -> AsyncIterator[str]:
    from server.sandbox import serve_emulator

    async with serve_emulator(emulator) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL cluster for the session (``WAN_MCP_TEST_DATABASE_URL`` to use another)."""
    from bench.postgres import INSTALL_HINT, postgres_bin, temporary_postgres

    override = os.environ.get("WAN_MCP_TEST_DATABASE_URL", "").strip()
    if override:
        yield override
        return
    if postgres_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    with temporary_postgres() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """An empty database of its own for one test."""
    from bench.postgres import drop_database, fresh_database

    dsn = fresh_database(postgres_server)
    try:
        yield dsn
    finally:
        drop_database(postgres_server, dsn)
