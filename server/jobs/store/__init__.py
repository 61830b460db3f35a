"""The job journal: one interface (``JobStore``), two engines, chosen by ``open_store``.

SQLite under ``WAN_MCP_HOME`` is the default; ``WAN_MCP_DATABASE_URL=postgresql://…`` puts the
journal in PostgreSQL, shared by several server processes.
"""

from __future__ import annotations

from server.jobs.store.base import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    MIGRATIONS,
    SCHEMA_VERSION,
    ChangeCallback,
    Job,
    JobStore,
    Status,
    SubmitState,
    new_job_id,
    new_task_id,
)
from server.jobs.store.sqlite import SqliteStore
from server.settings import Settings


async def open_store(settings: Settings) -> JobStore:
    """The journal these settings name, migrated to the current schema.

    Raises:
        ConfigError: the PostgreSQL journal cannot be reached (or psycopg is missing).
    """
    if settings.database_url is not None:
        from server.jobs.store.postgres import PostgresStore

        return await PostgresStore.open(settings.database_url.get_secret_value())
    return SqliteStore(settings.database_path)


__all__ = [
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ChangeCallback",
    "Job",
    "JobStore",
    "SqliteStore",
    "Status",
    "SubmitState",
    "new_job_id",
    "new_task_id",
    "open_store",
]
