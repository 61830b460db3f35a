"""The shared engine: the journal in PostgreSQL, for several server processes (replicas).

psycopg 3, async, with a connection pool for the short calls and one dedicated connection that
LISTENs for wake-ups. Every row change sends ``NOTIFY job_events, '<job id>'`` in its own
statement, delivered at commit. The money checks take one transaction-scoped advisory lock, so
two replicas cannot both pass the budget or both insert the same request. Leases are timed by the
database server's clock, whatever the replicas' clocks say.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Collection, Mapping
from typing import Any, LiteralString, cast

import anyio

from server.errors import ConfigError
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

log = logging.getLogger("wan_video_mcp.store")

CHANNEL = "job_events"
# pg_advisory_xact_lock keys: one for migrations, one for every money decision.
_MIGRATE_LOCK = 0x57414E01
_SPEND_LOCK = 0x57414E02
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
_INSERT = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)})"  # noqa: S608
_ENCODED = {"params", "notes", "sandbox", "webhook"}


def _pg(sql: str) -> LiteralString:
    """A statement in SQLite's dialect (``?`` placeholders, REAL) made PostgreSQL's."""
    sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql).replace("?", "%s")
    return cast(LiteralString, sql)


def safe_dsn(dsn: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def _encode(changes: dict[str, Any]) -> dict[str, Any]:
    encoded = dict(changes)
    for name in _ENCODED & set(changes):
        value = changes[name]
        if name == "params":
            encoded[name] = json.dumps(value, sort_keys=True, separators=(",", ":"))
        elif name == "notes":
            encoded[name] = json.dumps(list(value))
        else:
            encoded[name] = int(bool(value))
    return encoded


class PostgresStore(JobStore):
    """The journal in PostgreSQL. Build with ``await PostgresStore.open(dsn)``."""

    engine = "postgresql"

    def __init__(self, dsn: str, pool: Any) -> None:
        self.dsn = dsn
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = 10, connect_seconds: float = 10.0) -> PostgresStore:
        """Connect, migrate, and return the store.

        Raises:
            ConfigError: psycopg is not installed, or the database cannot be reached.
        """
        try:
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise ConfigError(
                "WAN_MCP_DATABASE_URL names PostgreSQL, but psycopg is not installed. Install "
                "'wan-video-mcp[postgres]' (psycopg[binary] and psycopg-pool), or unset the variable."
            ) from None
        pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
        )
        try:
            await pool.open(wait=True, timeout=connect_seconds)
        except Exception as exc:  # noqa: BLE001 - psycopg's and the pool's errors alike
            await pool.close()
            raise ConfigError(
                f"Could not connect to the PostgreSQL journal at {safe_dsn(dsn)} ({type(exc).__name__}). "
                "Check WAN_MCP_DATABASE_URL and that the database is up."
            ) from None
        store = cls(dsn, pool)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await (await conn.execute("SELECT max(version) AS v FROM schema_version")).fetchone()
            version = int(row["v"] or 0)
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    await conn.execute(_pg(statement))
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))

    async def schema_version(self) -> int:
        async with self._pool.connection() as conn:
            row = await (await conn.execute("SELECT max(version) AS v FROM schema_version")).fetchone()
        return int(row["v"] or 0)

    async def _rows(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(_pg(sql), args)).fetchall()

    async def insert(self, job: Job) -> Job:
        row = to_row(job)
        async with self._pool.connection() as conn:
            await conn.execute(_INSERT, [row[c] for c in COLUMNS])
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
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SPEND_LOCK,))
            for job in jobs:
                earlier = None
                if duplicate_since is not None:
                    cursor = await conn.execute(_pg(DUPLICATE_SQL), (job.request_hash, duplicate_since))
                    earlier = await cursor.fetchone()
                answers.append(job if earlier is None else from_row(earlier))
                if earlier is None:
                    new.append(job)
            if budget_usd is not None and new:
                spent_row = await (await conn.execute(_pg(SPENT_SQL), (budget_since,))).fetchone()
                price = sum(job.estimate_usd or 0.0 for job in new)
                refusal = over_budget(price, budget_usd, float(spent_row["spent"]), len(new))
                if refusal is not None:
                    raise refusal
            answers, new = name_group(answers, new)
            for job in new:
                row = to_row(job)
                await conn.execute(_INSERT, [row[c] for c in COLUMNS])
        return answers

    async def spent_since(self, since: float) -> float:
        rows = await self._rows(SPENT_SQL, (since,))
        return float(rows[0]["spent"])

    async def update(self, job_id: str, **changes: Any) -> Job:
        check_changes(changes)
        changes["updated_at"] = time.time()
        encoded = _encode(changes)
        assignments = ", ".join(f"{c} = %s" for c in encoded)
        sql = cast(
            LiteralString,
            f"WITH changed AS (UPDATE jobs SET {assignments} WHERE id = %s RETURNING *) "  # noqa: S608
            f"SELECT changed.*, pg_notify('{CHANNEL}', changed.id) AS notified FROM changed",
        )
        async with self._pool.connection() as conn:
            row = await (await conn.execute(sql, [*encoded.values(), job_id])).fetchone()
        if row is None:
            raise not_found(job_id)
        return from_row(row)

    async def update_if(self, job_id: str, expected: Mapping[str, Any], **changes: Any) -> Job | None:
        check_changes(changes, expected)
        changes["updated_at"] = time.time()
        encoded = _encode(changes)
        assignments = ", ".join(f"{c} = %s" for c in encoded)
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute("SELECT * FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            current_row = await cursor.fetchone()
            if current_row is None:
                raise not_found(job_id)
            current = from_row(current_row)
            if any(getattr(current, name) != value for name, value in expected.items()):
                return None
            sql = cast(LiteralString, f"UPDATE jobs SET {assignments} WHERE id = %s RETURNING *")  # noqa: S608
            row = await (await conn.execute(sql, [*encoded.values(), job_id])).fetchone()
            await conn.execute(f"SELECT pg_notify('{CHANNEL}', %s)", (job_id,))
        assert row is not None
        return from_row(row)

    async def get(self, job_id: str) -> Job:
        rows = await self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise not_found(job_id)
        return from_row(rows[0])

    async def select(self, where: str = "1=1", args: tuple[Any, ...] = (), limit: int = 1000) -> list[Job]:
        rows = await self._rows(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        )
        return [from_row(r) for r in rows]

    async def find_upload(self, sha256: str, origin: str, since: float) -> str | None:
        rows = await self._rows(
            "SELECT url FROM uploads WHERE sha256 = ? AND origin = ? AND created_at >= ?",
            (sha256, origin, since),
        )
        return str(rows[0]["url"]) if rows else None

    async def remember_upload(self, sha256: str, origin: str, url: str, at: float) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO uploads (sha256, origin, url, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (sha256, origin) "
                "DO UPDATE SET url = EXCLUDED.url, created_at = EXCLUDED.created_at",
                (sha256, origin, url, at),
            )

    async def claim(self, job_id: str, owner: str, seconds: float) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _pg(
                    f"UPDATE jobs SET lease_owner = ?, lease_until = {_NOW} + ? WHERE id = ? AND {LIVE_SQL} "  # noqa: S608
                    f"AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < {_NOW})"
                ),
                (owner, seconds, job_id, owner),
            )
            return cursor.rowcount == 1

    async def claim_free(self, owner: str, seconds: float, *, sandbox: bool, limit: int = 100) -> list[Job]:
        rows = await self._rows(
            f"UPDATE jobs SET lease_owner = ?, lease_until = {_NOW} + ? WHERE id IN ("  # noqa: S608
            f"SELECT id FROM jobs WHERE {LIVE_SQL} AND sandbox = ? "
            f"AND (lease_owner IS NULL OR lease_until < {_NOW}) "
            "ORDER BY created_at LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING *",
            (owner, seconds, int(sandbox), limit),
        )
        return [from_row(r) for r in rows]

    async def renew(self, owner: str, seconds: float, job_ids: Collection[str]) -> set[str]:
        if not job_ids:
            return set()
        rows = await self._rows(
            f"UPDATE jobs SET lease_until = {_NOW} + ? "  # noqa: S608
            f"WHERE id = ANY(?) AND lease_owner = ? AND {LEASABLE_SQL} RETURNING id",
            (seconds, list(job_ids), owner),
        )
        return {str(r["id"]) for r in rows}

    async def release(self, owner: str, job_id: str | None = None) -> None:
        async with self._pool.connection() as conn:
            if job_id is None:
                await conn.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s", (owner,)
                )
            else:
                await conn.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL "
                    "WHERE lease_owner = %s AND id = %s",
                    (owner, job_id),
                )

    async def first_delivery(self, delivery_id: str, at: float) -> bool:
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM webhook_events WHERE received_at < %s", (at - WEBHOOK_MEMORY_SECONDS,)
            )
            cursor = await conn.execute(
                "INSERT INTO webhook_events (id, received_at) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (delivery_id, at),
            )
            return cursor.rowcount == 1

    async def watch(self, on_change: ChangeCallback) -> None:
        import psycopg

        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # NOTIFY is not durable: whatever changed while nobody listened, re-read it all.
                    on_change(None)
                    delay = 0.5
                    async for note in conn.notifies():
                        on_change(note.payload)
            except psycopg.OperationalError as exc:
                log.warning("lost the journal's wake-up connection (%s); reconnecting", type(exc).__name__)
                await anyio.sleep(delay)
                delay = min(delay * 2, 10.0)
