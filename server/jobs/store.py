"""The job journal: one SQLite row per job, written before any money can be spent.

The row is the only truth ``get_result`` reads. ``submit_state`` records how far the submit got,
so a process that dies mid-submit is recognised on restart and never submits again:

    pending   the row exists; the submit request may be in flight
    accepted  the provider's job id is recorded
    refused   the provider certainly created nothing
    unknown   the request may have reached the provider, but no answer was read
    held      the row exists and nothing has been sent; the runner sends it unless it is cancelled

A job may also carry a ``task_id`` (its unguessable handle as an MCP task) and the time a cancel
was asked for (``cancel_requested_at``), which is kept even when the provider already had the job.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from server.errors import JobNotFound, SpendRefused

Status = Literal["queued", "running", "completed", "failed", "unconfirmed", "cancelled"]
SubmitState = Literal["pending", "accepted", "refused", "unknown", "held"]
LIVE_STATUSES: tuple[Status, ...] = ("queued", "running")
FINAL_STATUSES: tuple[Status, ...] = ("completed", "failed", "cancelled")

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
)


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

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES and self.provider_job_id is not None


_COLUMNS = tuple(f.name for f in fields(Job))


def new_job_id(slug: str) -> str:
    """A job id that names its model: ``<slug>-<12 hex digits>``."""
    return f"{slug}-{secrets.token_hex(6)}"


def new_task_id() -> str:
    """A task handle nobody can guess (128 random bits), unlike a job id."""
    return f"task_{secrets.token_urlsafe(16)}"


class JobStore:
    """SQLite journal (WAL mode). Calls are short and made from the event loop thread."""

    def __init__(self, path: Path | str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
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
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def insert(self, job: Job) -> Job:
        row = _to_row(job)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})",  # noqa: S608
                [row[c] for c in _COLUMNS],
            )
        return job

    def insert_checked(
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
        [row] = self.insert_checked_many(
            [job], budget_usd=budget_usd, budget_since=budget_since, duplicate_since=duplicate_since
        )
        return row

    def insert_checked_many(
        self,
        jobs: list[Job],
        *,
        budget_usd: float | None,
        budget_since: float,
        duplicate_since: float | None,
    ) -> list[Job]:
        """Insert every job of ``jobs`` that does not repeat a journaled request, or none at all.

        The duplicate checks (per job), the budget check (for the new jobs together) and the
        inserts are one ``BEGIN IMMEDIATE`` transaction, so concurrent calls (in this process or
        another one sharing the file) cannot race past either, and a group is all or nothing.

        Jobs that carry a ``group_id`` are inserted with the id of the first new one as their
        ``group_id``.

        Returns:
            For each job, the job as inserted or the earlier job with the same request.

        Raises:
            SpendRefused: the new jobs' estimates together do not fit in what is left of the budget.
        """
        placeholders = ", ".join("?" for _ in _COLUMNS)
        answers: list[Job] = []
        new: list[Job] = []
        with self._tx() as db:
            for job in jobs:
                earlier = None
                if duplicate_since is not None:
                    earlier = db.execute(
                        "SELECT * FROM jobs WHERE request_hash = ? AND created_at >= ? "
                        "AND status IN ('queued', 'running', 'completed', 'unconfirmed') "
                        "ORDER BY created_at DESC LIMIT 1",
                        (job.request_hash, duplicate_since),
                    ).fetchone()
                answers.append(job if earlier is None else _from_row(earlier))
                if earlier is None:
                    new.append(job)
            if budget_usd is not None and new:
                spent = _spent(db, budget_since)
                price = sum(job.estimate_usd or 0.0 for job in new)
                if spent + price > budget_usd + 1e-9:
                    left = max(budget_usd - spent, 0.0)
                    what = "This job costs" if len(new) == 1 else f"These {len(new)} takes cost"
                    raise SpendRefused(
                        f"{what} about ${price:.2f}, but only ${left:.2f} of the ${budget_usd:.2f} "
                        f"budget is left (${spent:.2f} spent in the current period). Nothing was sent. Raise "
                        "WAN_MCP_BUDGET_USD, wait for the period to roll over, or pick a cheaper setting"
                        + ("." if len(new) == 1 else " or fewer variants.")
                    )
            if new and new[0].group_id is not None:
                # The group is named after its first take that is really new.
                renamed = {job.id: replace(job, group_id=new[0].id) for job in new}
                answers = [renamed.get(job.id, job) for job in answers]
                new = list(renamed.values())
            for job in new:
                row = _to_row(job)
                db.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})",  # noqa: S608
                    [row[c] for c in _COLUMNS],
                )
        return answers

    def spent_since(self, since: float) -> float:
        """USD that may have been charged for jobs created since ``since``."""
        with self._lock:
            return _spent(self._db, since)

    def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes`` to one row and return the new row."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        changes["updated_at"] = time.time()
        with self._tx() as db:
            current = _one(db, job_id)
            updated = replace(current, **changes)
            row = _to_row(updated)
            assignments = ", ".join(f"{c} = ?" for c in changes)
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*(row[c] for c in changes), job_id])  # noqa: S608
        return updated

    def update_if(self, job_id: str, expected: Mapping[str, Any], **changes: Any) -> Job | None:
        """Apply ``changes`` only if the row still has the ``expected`` values (one transaction).

        Returns:
            The new row, or None when some expected value differs (nothing changed).
        """
        unknown = (set(changes) | set(expected)) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        changes["updated_at"] = time.time()
        with self._tx() as db:
            current = _one(db, job_id)
            if any(getattr(current, name) != value for name, value in expected.items()):
                return None
            updated = replace(current, **changes)
            row = _to_row(updated)
            assignments = ", ".join(f"{c} = ?" for c in changes)
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*(row[c] for c in changes), job_id])  # noqa: S608
        return updated

    def get(self, job_id: str) -> Job:
        with self._lock:
            return _one(self._db, job_id)

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except JobNotFound:
            return None

    def select(self, where: str = "1=1", args: tuple[Any, ...] = (), limit: int = 1000) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            ).fetchall()
        return [_from_row(r) for r in rows]

    def live(self) -> list[Job]:
        """Jobs the provider has accepted and that have not ended."""
        return self.select("status IN ('queued', 'running') AND provider_job_id IS NOT NULL")

    def group(self, group_id: str) -> list[Job]:
        """The takes of one variants call, in take order."""
        return sorted(self.select("group_id = ?", (group_id,), limit=100), key=lambda j: j.created_at)

    def interrupted_submits(self) -> list[Job]:
        """Rows whose submit was in flight when a process stopped."""
        return self.select("submit_state = 'pending'")

    def held(self) -> list[Job]:
        """Rows journaled but not yet sent (the runner sends them unless cancelled)."""
        return self.select("submit_state = 'held'")

    def by_task(self, task_id: str) -> Job | None:
        """The job followed as the task ``task_id``, if any."""
        rows = self.select("task_id = ?", (task_id,), limit=1)
        return rows[0] if rows else None

    def recent(self, limit: int = 20) -> list[Job]:
        return self.select(limit=limit)

    def find_upload(self, sha256: str, origin: str, since: float) -> str | None:
        """The URL of bytes with this digest uploaded to ``origin`` at or after ``since``."""
        with self._lock:
            row = self._db.execute(
                "SELECT url FROM uploads WHERE sha256 = ? AND origin = ? AND created_at >= ?",
                (sha256, origin, since),
            ).fetchone()
        return None if row is None else str(row["url"])

    def remember_upload(self, sha256: str, origin: str, url: str, at: float) -> None:
        """Record (or refresh) the URL of bytes with this digest uploaded to ``origin``."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (sha256, origin, url, created_at) VALUES (?, ?, ?, ?)",
                (sha256, origin, url, at),
            )


def _spent(db: sqlite3.Connection, since: float) -> float:
    # Anything that may have reached the provider counts: the reported cost when known, else the
    # estimate. A job the provider refused, or that never left, costs nothing; one about to be sent
    # (held) has its price reserved.
    value = db.execute(
        "SELECT COALESCE(SUM(COALESCE(cost_usd, estimate_usd, 0)), 0) FROM jobs "
        "WHERE created_at >= ? AND submit_state IN ('pending', 'accepted', 'unknown', 'held')",
        (since,),
    ).fetchone()[0]
    return float(value)


def _one(db: sqlite3.Connection, job_id: str) -> Job:
    row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(
            f"No job has the id '{job_id}'. Use the job_id returned by a generate call "
            "(the wan-video://jobs resource lists recent jobs)."
        )
    return _from_row(row)


def _to_row(job: Job) -> dict[str, Any]:
    row = asdict(job)
    row["params"] = json.dumps(job.params, sort_keys=True, separators=(",", ":"))
    row["sandbox"] = int(job.sandbox)
    row["notes"] = json.dumps(list(job.notes))
    return row


def _from_row(row: Mapping[str, Any] | sqlite3.Row) -> Job:
    values = {c: row[c] for c in _COLUMNS}
    values["params"] = json.loads(values["params"])
    values["sandbox"] = bool(values["sandbox"])
    values["notes"] = tuple(json.loads(values["notes"]))
    return Job(**values)
