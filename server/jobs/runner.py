"""The job runner: submit once, poll in the background, wake every waiting call.

One poller per live job runs in the server's task group, so a job keeps being followed (and its
video archived) after the call that started it has returned. Calls that wait on a job sleep on a
per-job event and send progress as the journal row changes, plus a heartbeat while nothing does.

Several processes may share one journal. A poller holds the job's lease (renewed by
``keep_leases``), so exactly one process polls and downloads each job; when a holder stops
renewing, another process takes the job over. Changes made in other processes arrive through the
store's ``watch`` as ``external_change`` and wake this process's waiting calls. A provider's
webhook (``confirm``) is a wake-up: one status read confirms it, and polling becomes a slow
safety net for jobs that will be called back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from server.catalog import ModelSpec, ProviderName
from server.catalog.params import build_body
from server.catalog.pricing import Estimate
from server.errors import (
    AuthError,
    ConfigError,
    ProviderError,
    RateLimited,
    Rejected,
    SpendRefused,
    Unavailable,
)
from server.jobs.clock import SubmitClock
from server.jobs.schedule import MAX_SAMPLES, PollPlanner
from server.jobs.store import Job, JobStore, new_job_id, new_task_id
from server.media import MediaService
from server.providers import Provider, ProviderStatus
from server.providers.http import MaybeSent, backoff
from server.providers.limits import ProviderLimits
from server.settings import Settings

log = logging.getLogger("wan_video_mcp.jobs")

ProgressCallback = Callable[[float, str], Awaitable[None]]
# A lost submission is looked for among the provider's jobs created in this window around ours
# (clock skew before; the submit's own timeout and some slack after).
RECONCILE_BEFORE = 10.0
RECONCILE_AFTER = 60.0
# A row's lease lasts this share of WAN_MCP_LEASE_SECONDS and is renewed, and free leases looked
# for, every LEASE_TICK of it: a holder that dies is replaced within 0.6 + 0.2 of the setting,
# and a live one has three chances to renew before its lease runs out.
LEASE_HOLD = 0.6
LEASE_TICK = 0.2
CANCELLED_UNSENT = "Cancelled before it was sent to the provider; nothing was charged."


@dataclass(frozen=True, slots=True)
class Submission:
    """The job a generate call is answered with; ``duplicate`` when it is an earlier one.

    ``takes``: for a variants call, every take (the first is ``job``) and whether it is an
    earlier job.
    """

    job: Job
    duplicate: bool
    takes: tuple[tuple[Job, bool], ...] = ()


def request_hash(model: str, params: Mapping[str, Any]) -> str:
    """A stable fingerprint of one request (model and validated arguments)."""
    blob = json.dumps({"model": model, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def describe_progress(job: Job, spec: ModelSpec | None, now: float) -> tuple[float, str]:
    """A fraction (0-1) and a readable line for a job's current state."""
    if job.status == "completed":
        return 1.0, "done"
    if job.status == "failed":
        return 1.0, f"failed: {job.error or 'unknown reason'}"
    if job.status == "unconfirmed":
        return 0.0, "submission unconfirmed"
    if job.status == "cancelled":
        return 1.0, "cancelled before it was sent; nothing was charged"
    if job.submit_state == "held":
        return 0.0, "waiting to be sent to the provider"
    if job.provider_job_id is None:
        return 0.0, "submitting"
    started = job.started_at or job.submitted_at or job.created_at
    elapsed = max(now - started, 0.0)
    if job.status == "queued":
        return 0.05, f"queued at the provider for {elapsed:.0f} s"
    if job.raw_status in ("completed", "success", "succeeded", "done"):
        return 0.97, "finished at the provider; saving the video"
    if job.progress is not None:
        fraction = 0.1 + 0.85 * job.progress
    else:
        typical = spec.typical_seconds if spec else 60.0
        fraction = 0.1 + 0.8 * min(elapsed / typical, 1.0)
    return min(fraction, 0.95), f"running for {elapsed:.0f} s"


class JobRunner:
    """Submits jobs, follows them to the end and lets calls wait on them."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        providers: Mapping[ProviderName, Provider],
        models: Mapping[str, ModelSpec],
        media: MediaService,
        task_group: TaskGroup,
    ) -> None:
        self._settings = settings
        self._store = store
        self._providers = providers
        self._models = models
        self._media = media
        self._tg = task_group
        self._events: dict[str, anyio.Event] = {}
        self._polling: set[str] = set()
        self._next_poll: dict[str, float] = {}
        self._naps: dict[str, anyio.CancelScope] = {}
        self._submitting: set[str] = set()
        self._history: dict[str, list[Job]] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        # Providers that call back when a job ends (set once their webhook secret is known).
        self.webhook_providers: set[ProviderName] = set()
        self._planner = PollPlanner(settings.poll, history=self._past_durations)
        self._submit_clock = SubmitClock()
        self._limits = ProviderLimits(settings.poll.provider_rate, settings.poll.provider_burst)

    @property
    def store(self) -> JobStore:
        return self._store

    @property
    def providers(self) -> Mapping[ProviderName, Provider]:
        return self._providers

    def spawn(self, func: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``func(*args)`` in the server's task group; a failure is logged, never fatal."""

        async def guarded() -> None:
            try:
                await func(*args)
            except Exception:
                log.exception("background task %s failed", getattr(func, "__name__", func))

        self._tg.start_soon(guarded)

    def provider_for(self, spec: ModelSpec) -> Provider:
        return self._providers[spec.provider]

    # --- change notification -------------------------------------------------------------

    def _event(self, job_id: str) -> anyio.Event:
        event = self._events.get(job_id)
        if event is None:
            event = self._events[job_id] = anyio.Event()
        return event

    def _changed(self, job_id: str) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()
        nap = self._naps.get(job_id)
        if nap is not None:
            nap.cancel()

    def external_change(self, job_id: str | None) -> None:
        """Another process changed this job's row (None: maybe any row): wake whoever waits here."""
        for changed in [job_id] if job_id is not None else [*self._events, *self._naps]:
            self._changed(changed)

    async def _update(self, job_id: str, **changes: Any) -> Job:
        job = await self._store.update(job_id, **changes)
        self._changed(job_id)
        return job

    # --- start and resume ---------------------------------------------------------------

    async def resume(self) -> int:
        """After a restart: settle interrupted submits and follow every live job nobody holds."""
        await self._load_history()
        await self.settle_interrupted()
        return await self.take_free_jobs()

    async def settle_interrupted(self) -> None:
        """Mark submits whose process stopped mid-request (their lease ran out) unconfirmed."""
        for job in await self._store.interrupted_submits(time.time()):
            await self._update(
                job.id,
                status="unconfirmed",
                submit_state="unknown",
                error="The server stopped while this job was being submitted; it was not resubmitted.",
            )
        # The provider's body (uploaded or inlined images) was never journaled, so a job that was
        # waiting to be sent (and whose process stopped renewing its lease) is settled, never sent
        # later by surprise.
        for job in await self._store.held(time.time()):
            await self._update(
                job.id,
                status="failed",
                submit_state="refused",
                finished_at=time.time(),
                error="The server stopped before sending this job, so nothing was sent and nothing "
                "was charged. Submit it again if you still want it.",
            )

    async def take_free_jobs(self) -> int:
        """Take over live jobs whose lease nobody holds (or ran out), and poll them here."""
        free = await self._store.claim_free(self.owner, self._hold_seconds, sandbox=self._settings.sandbox)
        for job in free:
            if job.id not in self._polling:
                log.info("following %s (its lease was free)", job.id)
                self._start_poller(job.id, submitted=False)
        return len(free)

    async def keep_leases(self) -> None:
        """Run until cancelled: renew this process's leases, take over jobs nobody renews."""
        while True:
            await anyio.sleep(self._settings.poll.lease_seconds * LEASE_TICK)
            try:
                await self._store.renew(self.owner, self._hold_seconds, self._polling | self._submitting)
                await self.settle_interrupted()
                await self.take_free_jobs()
            except Exception as exc:  # noqa: BLE001 - a journal hiccup must not stop the server
                log.warning("could not renew job leases: %s", exc)

    @property
    def _hold_seconds(self) -> float:
        return self._settings.poll.lease_seconds * LEASE_HOLD

    async def release_leases(self) -> None:
        """Give up every lease this process holds (on shutdown), so another takes over at once."""
        await self._store.release(self.owner)

    async def follow(self, job: Job, *, submitted: bool = False) -> None:
        """Make sure a live job has a poller: here, when this process gets its lease.

        A sandbox server never polls a real job (and a real one never a sandbox job): the other
        side's provider does not know it, and would have it marked failed. ``submitted``: the job
        was just submitted, so the submit's answer was its first status.
        """
        if job.sandbox != self._settings.sandbox or not job.is_live or job.id in self._polling:
            return
        self._polling.add(job.id)
        try:
            claimed = await self._store.claim(job.id, self.owner, self._hold_seconds)
        finally:
            self._polling.discard(job.id)
        if claimed:
            self._start_poller(job.id, submitted=submitted)

    def _start_poller(self, job_id: str, *, submitted: bool) -> None:
        self._polling.add(job_id)
        self._next_poll[job_id] = time.time()  # a new poller asks at once, or plans its first wait
        self._tg.start_soon(self._poll_loop, job_id, submitted, name=f"poll {job_id}")

    # --- submit -------------------------------------------------------------------------

    async def submit(
        self,
        spec: ModelSpec,
        values: Mapping[str, Any],
        estimate: Estimate,
        *,
        new_take: bool = False,
        fix_image: bool = False,
        as_task: bool = False,
    ) -> Submission:
        """Journal the job, then submit it exactly once.

        ``as_task``: the row gets a task handle and is returned as soon as it is committed, with
        nothing sent yet; the submit follows in the server's task group (``cancel`` can still stop
        it for free until it goes out).

        An identical request (same model, arguments and image bytes) made within the dedupe
        window returns the earlier job instead, unless ``new_take``. The caps are checked and the
        budget reserved in the same transaction that writes the row. The submit runs shielded
        from the caller's cancellation: a client that gives up mid-request must not leave a job
        the provider created but the journal doesn't know.

        Raises:
            ConfigError, InvalidRequest, SpendRefused: before anything is written or sent.
            ProviderError: the provider refused it; the row records the refusal.
        """
        [submission] = await self.submit_takes(
            spec, [values], estimate, new_take=new_take, fix_image=fix_image, as_task=as_task
        )
        return submission

    async def submit_takes(
        self,
        spec: ModelSpec,
        takes: Sequence[Mapping[str, Any]],
        estimate: Estimate,
        *,
        new_take: bool = False,
        fix_image: bool = False,
        as_task: bool = False,
    ) -> list[Submission]:
        """``submit`` for several takes of one request (the same images, e.g. other seeds).

        The images are prepared once; every take is its own row, with its own duplicate check,
        and the rows are written in one transaction that checks the budget for them all, so a
        set that does not fit is refused whole. Takes of more than one share the first one's id
        as ``group_id``. If the provider refuses a take, the takes not yet sent are recorded as
        refused (nothing sent, nothing charged); the error is raised only when no take was sent.

        Raises:
            ConfigError, InvalidRequest, SpendRefused: before anything is written or sent.
            ProviderError: the provider refused the first take sent; its row records the refusal.
        """
        provider = self.provider_for(spec)
        provider.require_key()
        spend = self._settings.spend
        if spend.max_job_usd is not None and estimate.usd > spend.max_job_usd + 1e-9:
            raise SpendRefused(
                f"This job costs about ${estimate.usd:.2f} ({estimate.source}), above the per-job cap of "
                f"${spend.max_job_usd:.2f}. Nothing was sent. Choose a shorter or lower-resolution video, a "
                "cheaper model, or raise WAN_MCP_MAX_JOB_USD."
            )
        prepared = await self._media.prepare_images(spec, takes[0], fix=fix_image)
        now = time.time()
        group_id = new_job_id(spec.slug) if len(takes) > 1 else None
        candidates: list[tuple[Job, dict[str, Any]]] = []
        for number, take in enumerate(takes):
            # What the preparation made of the first take, with what this take has of its own (its seed).
            own = {k: v for k, v in take.items() if k not in takes[0] or takes[0][k] != v}
            ready = {**prepared.values, **own}
            journal = {**prepared.journal_values, **own}
            body = build_body(spec, ready)
            notes = list(prepared.notes)
            if group_id is not None:
                notes.append(f"Take {number + 1} of {len(takes)}, seed {take.get('seed')}.")
            job = Job(
                id=group_id if number == 0 and group_id else new_job_id(spec.slug),
                model=spec.slug,
                provider=spec.provider,
                status="queued",
                submit_state="held" if as_task else "pending",
                params=journal,
                request_hash=request_hash(spec.slug, body),
                # Microseconds apart, so the takes keep their order in the journal.
                created_at=now + number * 1e-6,
                updated_at=now,
                estimate_usd=estimate.usd,
                estimate_source=estimate.source,
                sandbox=self._settings.sandbox,
                notes=tuple(notes),
                task_id=new_task_id() if as_task else None,
                group_id=group_id,
                webhook=spec.provider in self.webhook_providers,
                # The submit holds the row's lease: a pending or held row whose lease runs out was
                # interrupted.
                lease_owner=self.owner,
                lease_until=now + self._hold_seconds,
            )
            candidates.append((job, body))
        rows = await self._store.insert_checked_many(
            [job for job, _ in candidates],
            budget_usd=spend.budget_usd,
            budget_since=now - spend.budget_period_hours * 3600,
            duplicate_since=None if new_take or spend.dedupe_hours <= 0 else now - spend.dedupe_hours * 3600,
        )
        submissions: list[Submission] = []
        refusal: ProviderError | None = None
        for (candidate, body), job in zip(candidates, rows, strict=True):
            if job.id != candidate.id:
                log.info("request for %s repeats %s; not submitted again", spec.slug, job.id)
                await self.follow(job)
                submissions.append(Submission(job, duplicate=True))
                continue
            if refusal is not None:
                job = await self._update(
                    job.id,
                    status="failed",
                    submit_state="refused",
                    finished_at=time.time(),
                    error=f"Not sent, because the provider refused an earlier take: {refusal}",
                )
                submissions.append(Submission(job, duplicate=False))
                continue
            self._submitting.add(job.id)
            if as_task:
                self._tg.start_soon(self._send_held, job.id, spec, body, name=f"send {job.id}")
                submissions.append(Submission(job, duplicate=False))
                continue
            try:
                with anyio.CancelScope(shield=True):
                    job = await self._submit_once(job, provider, spec, body)
            except ProviderError as exc:
                refusal = exc
                submissions.append(Submission(await self._store.get(job.id), duplicate=False))
                continue
            finally:
                self._submitting.discard(job.id)
            if job.provider_job_id is not None:
                log.info("submitted %s as %s/%s", job.id, spec.provider, job.provider_job_id)
                await self.follow(job, submitted=True)
            submissions.append(Submission(job, duplicate=False))
        if refusal is not None and not any(s.job.submit_state != "refused" for s in submissions):
            raise refusal
        return submissions

    async def _send_held(self, job_id: str, spec: ModelSpec, body: dict[str, Any]) -> None:
        """Send a held job once it has a place under the provider's rate limit, unless cancelled."""
        try:
            await self._send_held_once(job_id, spec, body)
        finally:
            self._submitting.discard(job_id)

    async def _send_held_once(self, job_id: str, spec: ModelSpec, body: dict[str, Any]) -> None:
        await self._limits.acquire(spec.provider)
        # The claim and a cancel are each one transaction: exactly one of them wins.
        claimed = await self._store.update_if(job_id, {"submit_state": "held"}, submit_state="pending")
        if claimed is None:
            return
        self._changed(job_id)
        with anyio.CancelScope(shield=True):
            try:
                sent = await self._submit_once(claimed, self.provider_for(spec), spec, body)
            except ProviderError as exc:
                log.info("the provider refused %s: %s", job_id, exc)
                return
            except Exception:
                # The row already says how far the submit got; the server goes on.
                log.exception("sending %s failed", job_id)
                return
            if sent.provider_job_id is not None:
                log.info("submitted %s as %s/%s", job_id, spec.provider, sent.provider_job_id)
                await self.follow(sent, submitted=True)

    async def cancel(self, job_id: str) -> Job:
        """Stop a job that has not been sent (nothing is charged); otherwise record the request.

        A provider that has the job cannot be told to stop (WaveSpeed has no cancel), so such a job
        runs to its end, is billed, and its row says the cancel came too late.
        """
        job = await self._store.get(job_id)
        if job.is_final:
            return job
        now = time.time()
        stopped = await self._store.update_if(
            job_id,
            {"submit_state": "held"},
            status="cancelled",
            submit_state="refused",
            cancel_requested_at=now,
            finished_at=now,
            error=CANCELLED_UNSENT,
        )
        if stopped is None:
            stopped = await self._store.update_if(
                job_id, {"cancel_requested_at": None}, cancel_requested_at=now
            )
        self._changed(job_id)
        return stopped or await self._store.get(job_id)

    def next_poll_delay(self, job: Job) -> float:
        """Seconds until the runner next asks the provider about ``job`` (a hint for clients)."""
        return self._next_poll_delay(job, self._models.get(job.model))

    async def _submit_once(self, job: Job, provider: Provider, spec: ModelSpec, body: dict[str, Any]) -> Job:
        sent = time.time()
        try:
            submitted = await provider.submit(spec, body, webhook=job.webhook)
        except MaybeSent as exc:
            log.warning("submit of %s unconfirmed: %s", job.id, exc)
            return await self._update(
                job.id,
                status="unconfirmed",
                submit_state="unknown",
                error=f"{exc} The job may exist at the provider; it was not resubmitted.",
            )
        except ProviderError as exc:
            await self._update(
                job.id, status="failed", submit_state="refused", error=str(exc), finished_at=time.time()
            )
            raise
        except BaseException as exc:
            await self._update(
                job.id,
                status="unconfirmed",
                submit_state="unknown",
                error=f"The submit was interrupted ({type(exc).__name__}); it was not resubmitted.",
            )
            raise
        now = time.time()
        return await self._update(
            job.id,
            provider_job_id=submitted.provider_job_id,
            submit_state="accepted",
            # When the provider took it, not when its answer came: the schedule counts from there.
            submitted_at=self._submit_clock.started(provider.name, sent, now, submitted.status.created_at),
            **self._status_changes(job, submitted.status, now),
        )

    async def reconcile(self, job: Job) -> Job:
        """Look for an unconfirmed submission at the provider and adopt it if exactly one matches."""
        if (
            job.status != "unconfirmed"
            or job.provider_job_id is not None
            or job.sandbox != self._settings.sandbox
        ):
            return job
        spec = self._models.get(job.model)
        provider = self._providers.get(job.provider)  # type: ignore[call-overload]
        if spec is None or provider is None:
            return job
        try:
            found = await provider.find_submissions(
                spec, job.created_at - RECONCILE_BEFORE, job.created_at + RECONCILE_AFTER
            )
        except (ProviderError, ConfigError) as exc:
            return await self._update(job.id, last_error=f"Could not look the job up at the provider: {exc}")
        if found is None:
            return job
        known = {
            j.provider_job_id
            for j in await self._store.select(
                "model = ? AND provider_job_id IS NOT NULL", (job.model,), limit=10_000
            )
        }
        candidates = [i for i in found if i not in known]
        span = RECONCILE_BEFORE + RECONCILE_AFTER
        rivals = await self._store.select(
            # A submit still in flight is a rival too: its provider job may not be journaled yet.
            "model = ? AND submit_state IN ('pending', 'unknown') AND provider_job_id IS NULL AND id != ? "
            "AND created_at BETWEEN ? AND ?",
            (job.model, job.id, job.created_at - span, job.created_at + span),
        )
        if candidates and rivals:
            # Another lost submission of this model could own what the provider has: never guess.
            return await self._update(
                job.id,
                last_error=f"{len(rivals) + 1} submissions of this model were lost close together and "
                f"the provider has {len(candidates)} job(s) from then ({', '.join(candidates[:5])}); "
                "they are left unconfirmed rather than guess which is which. Check the provider's dashboard.",
            )
        if len(candidates) == 1:
            job = await self._update(
                job.id,
                provider_job_id=candidates[0],
                submit_state="accepted",
                status="queued",
                error=None,
                submitted_at=job.created_at,
                notes=(*job.notes, "The lost submission was found in the provider's history and adopted."),
            )
            log.info("reconciled %s with provider job %s", job.id, candidates[0])
            await self.follow(job)
            return job
        if not candidates and time.time() - job.created_at >= self._settings.poll.reconcile_grace:
            return await self._update(
                job.id,
                status="failed",
                submit_state="refused",
                finished_at=time.time(),
                error="The provider has no record of this submission, so it was never created and nothing "
                "was charged. Submit it again if you still want it.",
            )
        if len(candidates) > 1:
            return await self._update(
                job.id,
                last_error=f"{len(candidates)} jobs of this model at the provider could be this one "
                f"({', '.join(candidates[:5])}); it was left unconfirmed rather than guess.",
            )
        return job

    # --- polling ------------------------------------------------------------------------

    def _status_changes(self, job: Job, status: ProviderStatus, now: float) -> dict[str, Any]:
        changes: dict[str, Any] = {"raw_status": status.raw_status, "last_error": None}
        if status.progress is not None:
            changes["progress"] = status.progress
        if status.inference_ms is not None:
            changes["inference_ms"] = status.inference_ms
        if status.state == "running" and job.started_at is None:
            changes["started_at"] = now
        if status.state in ("queued", "running"):
            changes["status"] = status.state
        elif status.state == "failed":
            changes.update(status="failed", error=status.error, finished_at=now)
        else:
            # Completed at the provider; the job completes here once its video is archived.
            changes.update(status="running", video_url=status.video_url, progress=1.0)
            if status.cost_usd is not None:
                changes["cost_usd"] = status.cost_usd
            if job.started_at is None:
                changes["started_at"] = now
        return changes

    async def _poll_loop(self, job_id: str, submitted: bool = False) -> None:
        failures = 0
        paced = False  # True: the wait just ended also took a place under the provider's rate limit
        try:
            while True:
                job = await self._store.get(job_id)
                if job.is_final or job.provider_job_id is None:
                    return
                if job.lease_owner != self.owner:
                    log.info("%s is followed by another process now", job_id)
                    return
                if job.video_url is not None:
                    await self._finish(job)
                    return
                spec = self._models.get(job.model)
                provider = self._providers[job.provider]  # type: ignore[index]
                if submitted and (self._planned or job.webhook):  # a fresh job's first poll waits too
                    submitted, paced = False, True
                    await self._nap(job, self._plan_next_poll(job, spec))
                    continue
                if not paced:
                    await self._limits.acquire(job.provider)
                paced = False
                try:
                    status = await provider.poll(job.provider_job_id)
                except (Unavailable, RateLimited) as exc:
                    failures += 1
                    await self._update(job_id, last_error=str(exc))
                    retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
                    if retry_after is not None:  # the account is limited: every job waits
                        self._limits.hold(job.provider, min(retry_after, self._settings.poll.retry_cap))
                    await anyio.sleep(backoff(failures, self._settings.poll, retry_after))
                    continue
                except Rejected as exc:
                    if exc.status == 404:
                        await self._update(
                            job_id,
                            status="failed",
                            error="The provider no longer knows this job (WaveSpeed keeps jobs for 7 days).",
                            finished_at=time.time(),
                        )
                        return
                    await self._update(job_id, last_error=str(exc))
                    return
                except (AuthError, ConfigError) as exc:
                    # Polling cannot go on without a working key; get_result starts it again.
                    await self._update(job_id, last_error=str(exc))
                    return
                failures = 0
                job = await self._update(job_id, **self._status_changes(job, status, time.time()))
                self._planner.observe(job, spec, time.time())
                if job.is_final:
                    return
                if job.video_url is None:
                    # One wait for both the planned time and a place under the provider's limit.
                    await self._nap(job, self._plan_next_poll(job, spec))
                    paced = True
        except Exception:
            log.exception("poller for %s crashed", job_id)
            with contextlib.suppress(Exception):
                await self._update(
                    job_id, last_error="internal error while following this job; call get_result to retry"
                )
        finally:
            self._polling.discard(job_id)
            self._next_poll.pop(job_id, None)
            self._planner.forget(job_id)

    async def _nap(self, job: Job, delay: float) -> None:
        """Wait ``delay`` and for a place under the provider's limit, or less if the job's row
        gains a video or ends in another process (a webhook) or its lease is lost."""
        until = anyio.current_time() + delay
        while True:
            with anyio.CancelScope() as scope:
                self._naps[job.id] = scope
                try:
                    await self._limits.acquire(job.provider, max(until - anyio.current_time(), 0.0))
                finally:
                    self._naps.pop(job.id, None)
            if not scope.cancelled_caught:
                return
            fresh = await self._store.get(job.id)
            if fresh.video_url is not None or not fresh.is_live or fresh.lease_owner != self.owner:
                return

    @property
    def _planned(self) -> bool:
        """Polls follow the adaptive schedule (not a fixed interval, nor at once as in tests)."""
        policy = self._settings.poll
        # Sandbox jobs end after a number of polls, not a time, so there is nothing to plan.
        return policy.adaptive and policy.interval > 0 and not self._settings.sandbox

    def _next_poll_delay(self, job: Job, spec: ModelSpec | None) -> float:
        if job.webhook and job.provider in self.webhook_providers:
            return self._settings.poll.webhook_poll_interval
        if not self._planned:
            return self._settings.poll.interval
        return self._planner.next_delay(job, spec, time.time())

    def _plan_next_poll(self, job: Job, spec: ModelSpec | None) -> float:
        """The poller's own wait before its next poll, remembered for ``next_poll_at``."""
        delay = self._next_poll_delay(job, spec)
        self._next_poll[job.id] = time.time() + delay
        return delay

    def next_poll_at(self, job_id: str) -> float | None:
        """When this process plans to ask the provider about a live job next (epoch seconds), if it
        follows the job; the player asks for news at this pace."""
        return self._next_poll.get(job_id) if job_id in self._polling else None

    def _past_durations(self, model: str) -> list[Job]:
        """This model's last completed jobs, oldest first: what the planner learned before a restart."""
        return self._history.get(model, [])

    async def _load_history(self) -> None:
        # The planner asks synchronously, once per model: read the journal for it up front.
        for model in self._models:
            rows = await self._store.select(
                "model = ? AND status = 'completed'", (model,), limit=4 * MAX_SAMPLES
            )
            self._history[model] = list(reversed(rows))

    async def _finish(self, job: Job) -> None:
        assert job.video_url is not None
        spec = self._models.get(job.model)
        changes: dict[str, Any] = {"status": "completed", "finished_at": time.time()}
        try:
            archived = await self._media.archive(job, spec)
        except Exception as exc:  # noqa: BLE001 - any failure to save locally must still complete the job
            log.warning("could not archive the video of %s: %s", job.id, exc)
            changes["last_error"] = (
                f"The video could not be saved locally ({exc}); its provider URL still works."
            )
        else:
            if archived is not None:
                changes.update(local_path=str(archived.video_path), poster_path=archived.poster_path)
        await self._update(job.id, **changes)

    # --- webhooks -----------------------------------------------------------------------

    async def confirm(self, provider: ProviderName, provider_job_id: str) -> Job | None:
        """A provider called back about a job: read its status once and record it.

        The callback only wakes this up; the status comes from the provider's own answer to us,
        never from the callback's body. Whichever process holds the job's lease is woken by the
        row change and downloads the video.
        """
        job = await self._store.by_provider_job(provider, provider_job_id)
        if (
            job is None
            or not job.is_live
            or job.video_url is not None
            or job.sandbox != self._settings.sandbox
        ):
            return job
        try:
            status = await self._providers[provider].poll(provider_job_id)
        except (ProviderError, ConfigError) as exc:
            log.warning("could not confirm a callback for %s: %s", job.id, exc)
            return job
        job = await self._update(job.id, **self._status_changes(job, status, time.time()))
        if job.is_live and job.lease_owner is None:
            await self.follow(job)
        return job

    # --- waiting ------------------------------------------------------------------------

    def _held_elsewhere(self, job: Job) -> bool:
        # A hint only (clocks differ a little); claim decides.
        return job.lease_owner not in (None, self.owner) and (job.lease_until or 0.0) > time.time()

    async def wait(
        self, job_id: str, wait_seconds: float, on_progress: ProgressCallback | None = None
    ) -> Job:
        """Wait up to ``wait_seconds`` for the job to end, reporting progress; return its row."""
        deadline = anyio.current_time() + wait_seconds
        heartbeat = self._settings.poll.heartbeat
        last_fraction = -1.0
        last_message = ""
        while True:
            event = self._event(job_id)
            job = await self._store.get(job_id)
            if job.sandbox != self._settings.sandbox:
                return job
            if job.is_live and job.id not in self._polling and not self._held_elsewhere(job):
                await self.follow(job)
            if on_progress is not None:
                fraction, message = describe_progress(job, self._models.get(job.model), time.time())
                fraction = max(fraction, last_fraction)
                if fraction > last_fraction or message != last_message:
                    await on_progress(fraction, message)
                    last_fraction, last_message = fraction, message
            remaining = deadline - anyio.current_time()
            if not job.is_live or remaining <= 0:
                return job
            with anyio.move_on_after(min(remaining, heartbeat)):
                await event.wait()
