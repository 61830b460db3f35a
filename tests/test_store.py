"""One contract for the journal, run against both engines: SQLite and a real PostgreSQL.

Each test opens two stores on the same journal (two connections, as two processes would) where
the behaviour is about sharing it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.errors import JobNotFound, SpendRefused
from server.jobs.store import SCHEMA_VERSION, Job, JobStore, SqliteStore, new_job_id
from server.jobs.store.postgres import PostgresStore, safe_dsn

pytestmark = pytest.mark.anyio

Opener = Callable[[], Coroutine[Any, Any, JobStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores on one journal of the engine under test; closes them afterwards."""
    opened: list[JobStore] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite3"

        async def open_store() -> JobStore:
            opened.append(SqliteStore(path))
            return opened[-1]
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")

        async def open_store() -> JobStore:
            opened.append(await PostgresStore.open(dsn, pool_size=4))
            return opened[-1]

    yield open_store
    for store in opened:
        await store.close()


def make_job(
    request_hash: str = "h", *, estimate: float = 0.05, provider_job_id: str | None = None, **changes: Any
) -> Job:
    now = time.time()
    values: dict[str, Any] = {
        "id": new_job_id("wan22_i2v_480p_ultra_fast"),
        "model": "wan22_i2v_480p_ultra_fast",
        "provider": "wavespeed",
        "status": "queued",
        "submit_state": "accepted" if provider_job_id else "pending",
        "params": {"prompt": "a cat", "loras": [{"path": "x", "scale": 1.0}]},
        "request_hash": request_hash,
        "created_at": now,
        "updated_at": now,
        "estimate_usd": estimate,
        "provider_job_id": provider_job_id,
        **changes,
    }
    return Job(**values)


async def test_a_row_round_trips_with_its_json_fields(open_journal: Opener) -> None:
    store = await open_journal()
    job = await store.insert(make_job(notes=("one", "two"), sandbox=True, webhook=True))
    again = await store.get(job.id)
    assert again == job
    updated = await store.update(job.id, status="running", progress=0.5, notes=("three",))
    assert (updated.status, updated.progress, updated.notes) == ("running", 0.5, ("three",))
    assert await store.get(job.id) == updated
    assert updated.updated_at >= job.updated_at
    with pytest.raises(JobNotFound):
        await store.get("wan22_i2v-000000000000")
    with pytest.raises(JobNotFound):
        await store.update("wan22_i2v-000000000000", status="failed")
    with pytest.raises(ValueError, match="unknown job fields"):
        await store.update(job.id, colour="red")


async def test_selects_are_newest_first_and_take_portable_placeholders(open_journal: Opener) -> None:
    store = await open_journal()
    old = await store.insert(make_job("a", created_at=time.time() - 10))
    new = await store.insert(make_job("b", provider_job_id="p-1"))
    assert [j.id for j in await store.recent()] == [new.id, old.id]
    assert [j.id for j in await store.select("request_hash = ?", ("a",))] == [old.id]
    assert [j.id for j in await store.live()] == [new.id]
    found = await store.by_provider_job("wavespeed", "p-1")
    assert found is not None
    assert found.id == new.id
    assert await store.by_provider_job("vtrix", "p-1") is None


async def test_the_schema_is_migrated_once_to_the_current_version(open_journal: Opener) -> None:
    first = await open_journal()
    job = await first.insert(make_job())
    second = await open_journal()
    assert await first.schema_version() == await second.schema_version() == SCHEMA_VERSION
    assert (await second.get(job.id)).id == job.id


async def test_an_identical_request_returns_the_earlier_job(open_journal: Opener) -> None:
    one, two = await open_journal(), await open_journal()
    since = time.time() - 60
    first = await one.insert_checked(make_job("same"), budget_usd=None, budget_since=0, duplicate_since=since)
    again = await two.insert_checked(make_job("same"), budget_usd=None, budget_since=0, duplicate_since=since)
    assert again.id == first.id
    assert len(await one.select()) == 1


async def test_concurrent_submits_on_two_connections_never_pass_the_budget(open_journal: Opener) -> None:
    stores = [await open_journal(), await open_journal()]
    admitted: list[str] = []
    refused: list[str] = []

    async def attempt(n: int) -> None:
        job = make_job(f"req-{n}", estimate=0.10)
        try:
            await stores[n % 2].insert_checked(job, budget_usd=1.0, budget_since=0, duplicate_since=None)
        except SpendRefused:
            refused.append(job.id)
        else:
            admitted.append(job.id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(attempt, n)
    assert (len(admitted), len(refused)) == (10, 40)
    assert await stores[0].spent_since(0) == pytest.approx(1.0)


async def test_spend_counts_what_may_have_been_charged(open_journal: Opener) -> None:
    store = await open_journal()
    await store.insert(make_job("a", estimate=0.5, submit_state="refused", status="failed"))
    await store.insert(make_job("b", estimate=0.5, submit_state="unknown", status="unconfirmed"))
    await store.insert(make_job("c", estimate=0.5, provider_job_id="p", cost_usd=0.2))
    assert await store.spent_since(0) == pytest.approx(0.7)


async def test_a_lease_has_one_holder_until_it_runs_out(open_journal: Opener) -> None:
    a, b = await open_journal(), await open_journal()
    job = await a.insert(make_job(provider_job_id="p-1"))
    assert await a.claim(job.id, "A", 0.5)
    assert not await b.claim(job.id, "B", 0.5)
    assert await a.claim(job.id, "A", 0.5)  # the holder may claim again
    assert await a.renew("A", 0.5, {job.id}) == {job.id}
    assert await b.renew("B", 0.5, {job.id}) == set()
    with anyio.fail_after(5):
        while not await b.claim(job.id, "B", 30):  # noqa: ASYNC110 - the lease runs out by the clock
            await anyio.sleep(0.05)
    assert (await a.get(job.id)).lease_owner == "B"
    assert await a.renew("A", 0.5, {job.id}) == set()


async def test_free_jobs_are_claimed_once_and_only_live_ones(open_journal: Opener) -> None:
    a, b = await open_journal(), await open_journal()
    live = await a.insert(make_job("1", provider_job_id="p-1"))
    held = await a.insert(make_job("2", provider_job_id="p-2"))
    await a.insert(make_job("3", provider_job_id="p-3", status="completed"))
    await a.insert(make_job("4"))  # no provider id yet: nothing to poll
    await a.insert(make_job("5", provider_job_id="p-5", sandbox=True))
    assert await a.claim(held.id, "A", 30)
    claimed = await b.claim_free("B", 30, sandbox=False)
    assert [j.id for j in claimed] == [live.id]
    assert claimed[0].lease_owner == "B"
    assert await a.claim_free("A", 30, sandbox=False) == []
    await b.release("B")
    assert [j.id for j in await a.claim_free("A", 30, sandbox=False)] == [live.id]


async def test_a_pending_submit_is_interrupted_only_once_its_lease_runs_out(open_journal: Opener) -> None:
    store = await open_journal()
    now = time.time()
    mine = await store.insert(make_job("a", lease_owner="A", lease_until=now + 30))
    gone = await store.insert(make_job("b", lease_owner="B", lease_until=now - 1))
    legacy = await store.insert(make_job("c"))
    assert {j.id for j in await store.interrupted_submits(now)} == {gone.id, legacy.id}
    assert mine.id not in {j.id for j in await store.interrupted_submits(now)}


async def test_a_webhook_delivery_is_seen_once(open_journal: Opener) -> None:
    a, b = await open_journal(), await open_journal()
    now = time.time()
    assert await a.first_delivery("wavespeed:msg_1", now)
    assert not await b.first_delivery("wavespeed:msg_1", now)
    assert await b.first_delivery("wavespeed:msg_2", now)


async def test_uploads_are_remembered_and_refreshed(open_journal: Opener) -> None:
    store = await open_journal()
    await store.remember_upload("abc", "https://x", "https://x/1", 100.0)
    await store.remember_upload("abc", "https://x", "https://x/2", 200.0)
    assert await store.find_upload("abc", "https://x", 150.0) == "https://x/2"
    assert await store.find_upload("abc", "https://x", 250.0) is None


async def test_a_change_in_another_connection_is_heard_within_a_second(open_journal: Opener) -> None:
    watcher, writer = await open_journal(), await open_journal()
    job = await writer.insert(make_job(provider_job_id="p-1"))
    heard: list[str | None] = []
    got = anyio.Event()

    def on_change(job_id: str | None) -> None:
        heard.append(job_id)
        if job_id == job.id:
            got.set()

    async with anyio.create_task_group() as group:
        group.start_soon(watcher.watch, on_change)
        # The watcher may not listen yet when the first write lands: write again until heard.
        written = anyio.current_time()
        for _ in range(5):
            written = anyio.current_time()
            await writer.update(job.id, status="running")
            with anyio.move_on_after(1.0):
                await got.wait()
            if got.is_set():
                break
        assert got.is_set()
        assert anyio.current_time() - written < 1.0
        group.cancel_scope.cancel()


def test_a_database_url_is_shown_without_its_password() -> None:
    assert safe_dsn("postgresql://app:s3cret@db:5432/wan") == "postgresql://app:***@db:5432/wan"
    assert "s3cret" not in safe_dsn("postgres://app:s3cret@db/wan")
