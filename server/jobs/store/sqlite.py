"""The embedded engine: one SQLite file (WAL mode) under ``WAN_MCP_HOME``.

Several processes on one machine may share the file (Claude Desktop and Claude Code both start
the server on the same home): ``BEGIN IMMEDIATE`` serialises the money checks, leases are timed
by the host's clock, and ``PRAGMA data_version`` tells a process cheaply that another one wrote.
Calls are short and made from the event loop thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Generator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from server.jobs.store.base import (
    COLUMNS,
    DUPLICATE_SQL,
    LEASABLE_SQL,
    LIVE_SQL,
    MIGRATIONS,
    SPENT_SQL,
    WEBHOOK_MEMORY_SECONDS,
    ChangeCallback,
    Job,
    JobStore,
    check_changes,
    from_row,
    name_group,
    not_found,
    over_budget,
    statements,
    to_row,
)

# How often another process's writes are looked for; a waiting call hears of them this late.
WATCH_INTERVAL = 0.2
# Rows are found by updated_at, which each writer stamps before it commits: look back this far.
_CLOCK_SLACK = 2.0
_INSERT = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608


class SqliteStore(JobStore):
    """The journal in one SQLite file."""

    engine = "sqlite"

    def __init__(self, path: Path | str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """Close the file (for callers without an event loop)."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Generator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as db:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    async def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    async def insert(self, job: Job) -> Job:
        return self.insert_now(job)

    def insert_now(self, job: Job) -> Job:
        """``insert`` for callers without an event loop (benchmarks seeding a journal)."""
        row = to_row(job)
        with self._tx() as db:
            db.execute(_INSERT, [row[c] for c in COLUMNS])
        return job

    async def insert_checked_many(
        self,
        jobs: list[Job],
        *,
        budget_usd: float | None,
        budget_since: float,
        duplicate_since: float | None,
    ) -> list[Job]:
        answers: list[Job] = []
        new: list[Job] = []
        with self._tx() as db:
            for job in jobs:
                earlier = None
                if duplicate_since is not None:
                    earlier = db.execute(DUPLICATE_SQL, (job.request_hash, duplicate_since)).fetchone()
                answers.append(job if earlier is None else from_row(earlier))
                if earlier is None:
                    new.append(job)
            if budget_usd is not None and new:
                spent = float(db.execute(SPENT_SQL, (budget_since,)).fetchone()[0])
                price = sum(job.estimate_usd or 0.0 for job in new)
                refusal = over_budget(price, budget_usd, spent, len(new))
                if refusal is not None:
                    raise refusal
            answers, new = name_group(answers, new)
            for job in new:
                row = to_row(job)
                db.execute(_INSERT, [row[c] for c in COLUMNS])
        return answers

    async def spent_since(self, since: float) -> float:
        with self._lock:
            return float(self._db.execute(SPENT_SQL, (since,)).fetchone()[0])

    async def update(self, job_id: str, **changes: Any) -> Job:
        check_changes(changes)
        changes["updated_at"] = time.time()
        with self._tx() as db:
            current = _one(db, job_id)
            updated = replace(current, **changes)
            row = to_row(updated)
            assignments = ", ".join(f"{c} = ?" for c in changes)
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*(row[c] for c in changes), job_id])  # noqa: S608
        return updated

    async def update_if(self, job_id: str, expected: Mapping[str, Any], **changes: Any) -> Job | None:
        check_changes(changes, expected)
        changes["updated_at"] = time.time()
        with self._tx() as db:
            current = _one(db, job_id)
            if any(getattr(current, name) != value for name, value in expected.items()):
                return None
            updated = replace(current, **changes)
            row = to_row(updated)
            assignments = ", ".join(f"{c} = ?" for c in changes)
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*(row[c] for c in changes), job_id])  # noqa: S608
        return updated

    async def get(self, job_id: str) -> Job:
        with self._lock:
            return _one(self._db, job_id)

    async def select(self, where: str = "1=1", args: tuple[Any, ...] = (), limit: int = 1000) -> list[Job]:
        return self.select_now(where, args, limit)

    def select_now(self, where: str = "1=1", args: tuple[Any, ...] = (), limit: int = 1000) -> list[Job]:
        """``select`` for callers without an event loop (benchmarks reading a journal)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            ).fetchall()
        return [from_row(r) for r in rows]

    async def find_upload(self, sha256: str, origin: str, since: float) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT url FROM uploads WHERE sha256 = ? AND origin = ? AND created_at >= ?",
                (sha256, origin, since),
            ).fetchone()
        return None if row is None else str(row["url"])

    async def remember_upload(self, sha256: str, origin: str, url: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (sha256, origin, url, created_at) VALUES (?, ?, ?, ?)",
                (sha256, origin, url, at),
            )

    async def claim(self, job_id: str, owner: str, seconds: float) -> bool:
        now = time.time()
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ? AND {LIVE_SQL} "  # noqa: S608
                "AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                (owner, now + seconds, job_id, owner, now),
            )
            return cursor.rowcount == 1

    async def claim_free(self, owner: str, seconds: float, *, sandbox: bool, limit: int = 100) -> list[Job]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE {LIVE_SQL} AND sandbox = ? "  # noqa: S608
                "AND (lease_owner IS NULL OR lease_until < ?) ORDER BY created_at LIMIT ?",
                (int(sandbox), now, limit),
            ).fetchall()
            ids = [row["id"] for row in rows]
            db.executemany(
                "UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, now + seconds, i) for i in ids],
            )
        return [replace(from_row(r), lease_owner=owner, lease_until=now + seconds) for r in rows]

    async def renew(self, owner: str, seconds: float, job_ids: Collection[str]) -> set[str]:
        now = time.time()
        held: set[str] = set()
        with self._tx() as db:
            for job_id in job_ids:
                cursor = db.execute(
                    f"UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND {LEASABLE_SQL}",  # noqa: S608
                    (now + seconds, job_id, owner),
                )
                if cursor.rowcount == 1:
                    held.add(job_id)
        return held

    async def release(self, owner: str, job_id: str | None = None) -> None:
        with self._tx() as db:
            if job_id is None:
                db.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (owner,)
                )
            else:
                db.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ? AND id = ?",
                    (owner, job_id),
                )

    async def first_delivery(self, delivery_id: str, at: float) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM webhook_events WHERE received_at < ?", (at - WEBHOOK_MEMORY_SECONDS,))
            cursor = db.execute(
                "INSERT OR IGNORE INTO webhook_events (id, received_at) VALUES (?, ?)", (delivery_id, at)
            )
            return cursor.rowcount == 1

    async def watch(self, on_change: ChangeCallback) -> None:
        with self._lock:
            seen = self._db.execute("PRAGMA data_version").fetchone()[0]
        since = time.time()
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            with self._lock:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
                if version == seen:
                    continue
                seen = version
                now = time.time()
                rows = self._db.execute(
                    "SELECT id FROM jobs WHERE updated_at >= ?", (since - _CLOCK_SLACK,)
                ).fetchall()
                since = now
            for row in rows:
                on_change(str(row["id"]))


def _one(db: sqlite3.Connection, job_id: str) -> Job:
    row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise not_found(job_id)
    return from_row(row)
