"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's binaries, a temporary folder.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` system user
(``runuser``). It listens on loopback only, with durability off (nothing here must survive).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_HINT = "PostgreSQL is not installed (apt-get install postgresql; scripts/test does it as root)"


def postgres_bin() -> Path | None:
    """Debian's per-version binary folder, newest first (not on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(found[0]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def temporary_postgres(max_connections: int = 300) -> Iterator[str]:
    """Start a cluster; yield the DSN of its ``postgres`` database (user ``test``, no password)."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError(INSTALL_HINT)
    folder = Path(tempfile.mkdtemp(prefix="wan-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "test", "--auth=trust", "-E", "UTF8", "-N")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections={max_connections}"
        )
        run(
            str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"
        )
        try:
            yield f"postgresql://test@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_dsn: str) -> str:
    """Create an empty database on the cluster; return its DSN."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"


def drop_database(server_dsn: str, dsn: str) -> None:
    """Drop a database made by ``fresh_database``, whoever is still connected."""
    import psycopg

    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
