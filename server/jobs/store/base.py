"""The job journal's interface: one row per job, written before any money can be spent.

The row is the only truth ``get_result`` reads. ``submit_state`` records how far the submit got,
so a process that dies mid-submit is recognised on restart and never submits again:

    pending   the row exists; the submit request may be in flight
    accepted  the provider's job id is recorded
    refused   the provider certainly created nothing
    unknown   the request may have reached the provider, but no answer was read
    held      the row exists and nothing has been sent; the runner sends it unless it is cancelled

A job may also carry a ``task_id`` (its unguessable handle as an MCP task) and the time a cancel
was asked for (``cancel_requested_at``), which is kept even when the provider already had the job.

Two engines implement ``JobStore`` with the same schema and migrations: SQLite (``sqlite.py``,
the embedded default) and PostgreSQL (``postgres.py``, shared by several server processes). A
live job carries a lease (``lease_owner``, ``lease_until``): only its holder polls it, and any
process may take it over once the lease has run out.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from server.errors import JobNotFound, SpendRefused

Status = Literal["queued", "running", "completed", "failed", "unconfirmed", "cancelled"]
SubmitState = Literal["pending", "accepted", "refused", "unknown", "held"]
LIVE_STATUSES: tuple[Status, ...] = ("queued", "running")
FINAL_STATUSES: tuple[Status, ...] = ("completed", "failed", "cancelled")
# Told a job id that changed in another process, or None: anything may have changed.
ChangeCallback = Callable[[str | None], None]
# How long a seen webhook id is remembered (WaveSpeed refuses nothing older than 300 s anyway).
WEBHOOK_MEMORY_SECONDS = 24 * 3600.0

# Written in SQLite's dialect; the PostgreSQL engine maps REAL to DOUBLE PRECISION. Append only.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        status TEXT NOT NULL,
        submit_state TEXT NOT NULL,
        provider_job_id TEXT,
        params TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        raw_status TEXT NOT NULL DEFAULT '',
        progress REAL,
        video_url TEXT,
        error TEXT,
        last_error TEXT,
        estimate_usd REAL,
        estimate_source TEXT,
        cost_usd REAL,
        inference_ms INTEGER,
        local_path TEXT,
        poster_path TEXT,
        sandbox INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        submitted_at REAL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_status ON jobs(status);
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE INDEX jobs_request ON jobs(request_hash);
    """,
    "ALTER TABLE jobs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'",
    # Images uploaded to a provider, by content, so the same bytes go up once.
    """
    CREATE TABLE uploads (
        sha256 TEXT NOT NULL,
        origin TEXT NOT NULL,
        url TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (sha256, origin)
    )
    """,
    # A job followed as an MCP task, and a cancel asked for (kept when the job could not be stopped).
    """
    ALTER TABLE jobs ADD COLUMN task_id TEXT;
    ALTER TABLE jobs ADD COLUMN cancel_requested_at REAL;
    CREATE UNIQUE INDEX jobs_task ON jobs(task_id)
    """,
    # Takes of one variants call share the first take's id.
    "ALTER TABLE jobs ADD COLUMN group_id TEXT; CREATE INDEX jobs_group ON jobs(group_id)",
    # Several processes on one journal: who polls a live job, until when; whether the provider
    # calls back; and the webhook deliveries already seen.
    """
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until REAL;
    ALTER TABLE jobs ADD COLUMN webhook INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_provider_job ON jobs(provider, provider_job_id);
    CREATE INDEX jobs_updated ON jobs(updated_at);
    CREATE TABLE webhook_events (id TEXT PRIMARY KEY, received_at REAL NOT NULL)
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """The SQL statements of one migration."""
    return [s.strip() for s in script.split(";") if s.strip()]


@dataclass(frozen=True, slots=True)
class Job:
    """One journal row."""

    id: str
    model: str
    provider: str
    status: Status
    submit_state: SubmitState
    params: dict[str, Any]
    request_hash: str
    created_at: float
    updated_at: float
    provider_job_id: str | None = None
    raw_status: str = ""
    progress: float | None = None
    video_url: str | None = None
    error: str | None = None
    last_error: str | None = None
    estimate_usd: float | None = None
    estimate_source: str | None = None
    cost_usd: float | None = None
    inference_ms: int | None = None
    local_path: str | None = None
    poster_path: str | None = None
    sandbox: bool = False
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    notes: tuple[str, ...] = ()
    task_id: str | None = None
    cancel_requested_at: float | None = None
    group_id: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    webhook: bool = False

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES and self.provider_job_id is not None


COLUMNS = tuple(f.name for f in fields(Job))
# Columns only the lease calls write: a row update never carries them back.
LEASE_COLUMNS = frozenset({"lease_owner", "lease_until"})
LIVE_SQL = "status IN ('queued', 'running') AND provider_job_id IS NOT NULL"
# A lease is renewed while a job is being submitted or followed.
LEASABLE_SQL = "status IN ('queued', 'running')"


def new_job_id(slug: str) -> str:
    """A job id that names its model: ``<slug>-<12 hex digits>``."""
    return f"{slug}-{secrets.token_hex(6)}"


def new_task_id() -> str:
    """A task handle nobody can guess (128 random bits), unlike a job id."""
    return f"task_{secrets.token_urlsafe(16)}"


def not_found(job_id: str) -> JobNotFound:
    return JobNotFound(
        f"No job has the id '{job_id}'. Use the job_id returned by a generate call "
        "(the wan-video://jobs resource lists recent jobs)."
    )


def over_budget(price: float, budget_usd: float, spent: float, takes: int = 1) -> SpendRefused | None:
    """The refusal for ``takes`` new jobs costing ``price`` together when ``spent`` is already
    gone, or None if they fit."""
    if spent + price <= budget_usd + 1e-9:
        return None
    left = max(budget_usd - spent, 0.0)
    what = "This job costs" if takes == 1 else f"These {takes} takes cost"
    return SpendRefused(
        f"{what} about ${price:.2f}, but only ${left:.2f} of the ${budget_usd:.2f} "
        f"budget is left (${spent:.2f} spent in the current period). Nothing was sent. Raise "
        "WAN_MCP_BUDGET_USD, wait for the period to roll over, or pick a cheaper setting"
        + ("." if takes == 1 else " or fewer variants.")
    )


def name_group(answers: list[Job], new: list[Job]) -> tuple[list[Job], list[Job]]:
    """The group of a variants call is named after its first take that is really new."""
    if not new or new[0].group_id is None:
        return answers, new
    renamed = {job.id: replace(job, group_id=new[0].id) for job in new}
    return [renamed.get(job.id, job) for job in answers], list(renamed.values())


# Anything that may have reached the provider counts: the reported cost when known, else the
# estimate. A job the provider refused, or that never left, costs nothing; one about to be sent
# (held) has its price reserved.
SPENT_SQL = (
    "SELECT COALESCE(SUM(COALESCE(cost_usd, estimate_usd, 0)), 0) AS spent FROM jobs "
    "WHERE created_at >= ? AND submit_state IN ('pending', 'accepted', 'unknown', 'held')"
)
DUPLICATE_SQL = (
    "SELECT * FROM jobs WHERE request_hash = ? AND created_at >= ? "
    "AND status IN ('queued', 'running', 'completed', 'unconfirmed') "
    "ORDER BY created_at DESC LIMIT 1"
)


def to_row(job: Job) -> dict[str, Any]:
    row = asdict(job)
    row["params"] = json.dumps(job.params, sort_keys=True, separators=(",", ":"))
    row["sandbox"] = int(job.sandbox)
    row["webhook"] = int(job.webhook)
    row["notes"] = json.dumps(list(job.notes))
    return row


def from_row(row: Mapping[str, Any]) -> Job:
    values = {c: row[c] for c in COLUMNS}
    values["params"] = json.loads(values["params"])
    values["sandbox"] = bool(values["sandbox"])
    values["webhook"] = bool(values["webhook"])
    values["notes"] = tuple(json.loads(values["notes"]))
    return Job(**values)


def check_changes(changes: Mapping[str, Any], expected: Mapping[str, Any] | None = None) -> None:
    unknown = (set(changes) | set(expected or {})) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown job fields: {sorted(unknown)}")
    if set(changes) & LEASE_COLUMNS:
        raise ValueError("leases change only through claim, renew and release")


class JobStore(ABC):
    """The journal, whichever engine keeps it. Every call is one short transaction.

    ``select`` takes a portable ``where`` clause with ``?`` placeholders. Leases are timed by
    the engine's clock (the database server's for PostgreSQL), never by the caller's.
    """

    engine: str

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def schema_version(self) -> int:
        """The number of migrations applied."""

    @abstractmethod
    async def insert(self, job: Job) -> Job: ...

    async def insert_checked(
        self,
        job: Job,
        *,
        budget_usd: float | None,
        budget_since: float,
        duplicate_since: float | None,
    ) -> Job:
        """Insert ``job`` unless an identical request is already journaled or the budget is spent.

        Returns:
            ``job`` as inserted, or the earlier job with the same request (nothing inserted).

        Raises:
            SpendRefused: the job's estimate does not fit in what is left of the budget.
        """
        [row] = await self.insert_checked_many(
            [job], budget_usd=budget_usd, budget_since=budget_since, duplicate_since=duplicate_since
        )
        return row

    @abstractmethod
    async def insert_checked_many(
        self,
        jobs: list[Job],
        *,
        budget_usd: float | None,
        budget_since: float,
        duplicate_since: float | None,
    ) -> list[Job]:
        """Insert every job of ``jobs`` that does not repeat a journaled request, or none at all.

        The duplicate checks (per job), the budget check (for the new jobs together) and the
        inserts are one transaction serialised against every other on the journal, in this
        process or any other, so a group is all or nothing. Jobs that carry a ``group_id`` get the
        id of the first new one as their ``group_id`` (``name_group``).

        Returns:
            For each job, the job as inserted or the earlier job with the same request.

        Raises:
            SpendRefused: the new jobs' estimates together do not fit in what is left of the budget.
        """

    async def group(self, group_id: str) -> list[Job]:
        """The takes of one variants call, in take order."""
        rows = await self.select("group_id = ?", (group_id,), limit=100)
        return sorted(rows, key=lambda j: j.created_at)

    @abstractmethod
    async def spent_since(self, since: float) -> float:
        """USD that may have been charged for jobs created since ``since``."""

    @abstractmethod
    async def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes`` to one row, tell the other processes, and return the new row."""

    @abstractmethod
    async def update_if(self, job_id: str, expected: Mapping[str, Any], **changes: Any) -> Job | None:
        """Apply ``changes`` only if the row still has the ``expected`` values (one transaction).

        Returns:
            The new row, or None when some expected value differs (nothing changed).
        """

    @abstractmethod
    async def get(self, job_id: str) -> Job:
        """One row. Raises JobNotFound."""

    async def find(self, job_id: str) -> Job | None:
        try:
            return await self.get(job_id)
        except JobNotFound:
            return None

    @abstractmethod
    async def select(self, where: str = "1=1", args: tuple[Any, ...] = (), limit: int = 1000) -> list[Job]:
        """Rows matching ``where`` (``?`` placeholders), newest first."""

    async def live(self) -> list[Job]:
        """Jobs the provider has accepted and that have not ended."""
        return await self.select(LIVE_SQL)

    async def interrupted_submits(self, now: float) -> list[Job]:
        """Rows whose submit was in flight when its process stopped (nobody renews their lease)."""
        return await self.select(
            "submit_state = 'pending' AND (lease_until IS NULL OR lease_until < ?)", (now,)
        )

    async def held(self, now: float) -> list[Job]:
        """Rows journaled but not sent whose process stopped (nobody renews their lease)."""
        return await self.select("submit_state = 'held' AND (lease_until IS NULL OR lease_until < ?)", (now,))

    async def by_task(self, task_id: str) -> Job | None:
        """The job followed as the task ``task_id``, if any."""
        rows = await self.select("task_id = ?", (task_id,), limit=1)
        return rows[0] if rows else None

    async def recent(self, limit: int = 20) -> list[Job]:
        return await self.select(limit=limit)

    async def by_provider_job(self, provider: str, provider_job_id: str) -> Job | None:
        """The job a provider knows by this id, if this journal has it."""
        rows = await self.select("provider = ? AND provider_job_id = ?", (provider, provider_job_id), limit=1)
        return rows[0] if rows else None

    @abstractmethod
    async def find_upload(self, sha256: str, origin: str, since: float) -> str | None:
        """The URL of bytes with this digest uploaded to ``origin`` at or after ``since``."""

    @abstractmethod
    async def remember_upload(self, sha256: str, origin: str, url: str, at: float) -> None:
        """Record (or refresh) the URL of bytes with this digest uploaded to ``origin``."""

    # --- leases --------------------------------------------------------------------------

    @abstractmethod
    async def claim(self, job_id: str, owner: str, seconds: float) -> bool:
        """Take (or keep) the lease on one live job unless another owner holds it unexpired."""

    @abstractmethod
    async def claim_free(self, owner: str, seconds: float, *, sandbox: bool, limit: int = 100) -> list[Job]:
        """Take the leases of live jobs nobody holds (or whose lease ran out); return those rows."""

    @abstractmethod
    async def renew(self, owner: str, seconds: float, job_ids: Collection[str]) -> set[str]:
        """Extend ``owner``'s leases on these live jobs; return the ids it still holds."""

    @abstractmethod
    async def release(self, owner: str, job_id: str | None = None) -> None:
        """Give up ``owner``'s lease on one job, or on all of them."""

    # --- webhooks and wake-ups ----------------------------------------------------------

    @abstractmethod
    async def first_delivery(self, delivery_id: str, at: float) -> bool:
        """Record a webhook delivery id; False when it was seen before (a replay)."""

    @abstractmethod
    async def watch(self, on_change: ChangeCallback) -> None:
        """Run until cancelled, telling ``on_change`` about rows other processes change."""
