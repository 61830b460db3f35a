"""The emulator: configuration, in-memory state and the ASGI app speaking both vendors' APIs."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import media, vtrix, wavespeed
from .faults import Fault
from .routing import endpoint, error_response, vendor_of
from .state import EmuJob, Provider, RecordedCall, Upload, VideoSpec
from .transport import EmulatorTransport

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class _Pending:
    route: str
    fault: Fault
    left: int


class Emulator:
    """An in-memory stand-in for the WaveSpeed v3 and Vtrix generation APIs.

    ``app`` is a Starlette app; mount it in-process with ``transport()`` or on a socket with
    ``serve_emulator``. A key of None accepts any non-empty bearer key.

    Records: ``calls`` (every request, in order), ``jobs`` (by provider job id), ``uploads``,
    ``applied_faults`` (every fault a request met, with its route, in order).

    Knobs, all changeable between requests:

    - ``polls_to_complete`` (2): status polls answered queued/running before a job ends; the
      first poll says queued when this is 2 or more.
    - ``job_seconds`` (None): if set, a job ends once this much wall time has passed instead.
    - ``duration_sampler`` (None): if set, called with each new job for the seconds it runs (kept
      as ``EmuJob.duration``; it wins over the two above). ``LogNormalDurations`` draws them from a
      seeded log-normal per model.
    - ``hold`` (False): jobs keep running until ``release()``.
    - ``vtrix_envelope`` (False): wrap Vtrix answers in ``{data, status:{code, message}}``.
    - ``vtrix_statuses`` (``("in_progress", "completed")``): Vtrix's running and success words.
    - ``vtrix_balance_ok`` (True): False makes Vtrix submits answer 403 insufficient balance.
    - ``balance`` (100.0): what WaveSpeed's balance route reports.
    - ``render_scale`` (1.0) and ``fps`` (16): rendered video size factor and frame rate.
    - ``clock_skew`` (0.0): seconds the provider's clock is ahead of ours, in the ``created_at``
      it stamps on each job.
    - ``upload_routes`` (``{"binary", "ticket"}``): WaveSpeed upload routes that exist.
    - ``chaos`` (None): ``route -> Fault | None``, asked for a fault when none is queued for the
      request (a seeded random one makes faults arrive at a rate instead of in a queue).
    - ``watchers`` (``[]``): callables given each ``RecordedCall`` as it arrives, before any
      fault applies (a test waits on them to act at a precise moment).
    - ``send_webhooks`` (True): a WaveSpeed job submitted with ``?webhook=<url>`` is POSTed there,
      signed with ``webhook_secret``, when it ends (by its own clock while served by
      ``serve_emulator``, else on the poll or ``release`` that ends it). ``deliver_webhook``
      sends one by hand, tampered with if asked; ``webhook_deliveries`` records (job id, HTTP
      status) of each.
    """

    def __init__(self, wavespeed_key: str | None = None, vtrix_key: str | None = None) -> None:
        self.wavespeed_key = wavespeed_key
        self.vtrix_key = vtrix_key
        self.calls: list[RecordedCall] = []
        self.jobs: dict[str, EmuJob] = {}
        self.uploads: dict[str, Upload] = {}
        self.hold = False
        self.polls_to_complete = 2
        self.job_seconds: float | None = None
        self.duration_sampler: Callable[[EmuJob], float] | None = None
        self.vtrix_envelope = False
        self.vtrix_statuses: tuple[str, str] = ("in_progress", "completed")
        self.vtrix_balance_ok = True
        self.balance = 100.0
        self.render_scale = 1.0
        self.fps = 16
        self.clock_skew = 0.0
        self.upload_routes: set[str] = {"binary", "ticket"}
        self.chaos: Callable[[str], Fault | None] | None = None
        self.watchers: list[Callable[[RecordedCall], None]] = []
        self.applied_faults: list[tuple[str, Fault]] = []
        self.send_webhooks = True
        self.webhook_secret = "whsec_" + uuid.uuid4().hex
        self.webhook_deliveries: list[tuple[str, int]] = []
        self.tasks: TaskGroup | None = None
        self._faults: list[_Pending] = []
        self._failures: deque[str] = deque()
        self.app = Starlette(
            routes=[
                *media.routes(self),
                *wavespeed.routes(self),
                *vtrix.routes(self),
                Route("/{path:path}", endpoint(self, "unknown", _not_found), methods=_ALL_METHODS),
            ]
        )

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that calls the app in-process, with socket-like failure modes."""
        return EmulatorTransport(self.app)

    def submissions(self, provider: Provider | None = None) -> list[EmuJob]:
        """Jobs created by accepted submits, oldest first, optionally for one provider."""
        return [job for job in self.jobs.values() if provider is None or job.provider == provider]

    def inject(self, route: str, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` requests to ``route`` (or ``"*"``: any route) misbehave.

        Faults are queued: each request takes the oldest pending fault that matches it.
        """
        if times > 0:
            self._faults.append(_Pending(route, fault, times))

    def fail_next_job(self, reason: str = "Video generation failed") -> None:
        """Make the next created job end ``failed`` with ``reason`` instead of completing."""
        self._failures.append(reason)

    def release(self, job_id: str | None = None) -> None:
        """Let held jobs (all, or just ``job_id``) finish on their next poll (or now, if called back)."""
        for job in self.jobs.values():
            if job_id is None or job.id == job_id:
                job.released = True
                if job.webhook is not None and not job.terminal and self.tasks is not None:
                    self._end(job)

    def record_call(self, route: str, request: Request, body: bytes) -> None:
        """Append the request to ``calls`` (the routes call this first)."""
        parsed: object | None = None
        if body and not request.headers.get("content-type", "").startswith("multipart/"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        call = RecordedCall(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers=dict(request.headers.items()),
            json=parsed,
            route=route,
        )
        self.calls.append(call)
        for watcher in list(self.watchers):
            watcher(call)

    def next_fault(self, route: str) -> Fault | None:
        """Take the oldest pending fault for ``route``, if any; else ask ``chaos``."""
        fault = None
        for pending in self._faults:
            if pending.route in (route, "*"):
                pending.left -= 1
                if pending.left <= 0:
                    self._faults.remove(pending)
                fault = pending.fault
                break
        else:
            if self.chaos is not None:
                fault = self.chaos(route)
        if fault is not None:
            self.applied_faults.append((route, fault))
        return fault

    def clear_faults(self) -> None:
        """Forget every queued fault (``chaos`` stays as it is)."""
        self._faults.clear()

    def create_job(
        self,
        provider: Provider,
        model: str,
        body: dict[str, object],
        video: VideoSpec,
        cost: float,
        *,
        webhook: str | None = None,
        base: str = "",
    ) -> EmuJob:
        """Store a newly accepted job (``webhook``: where to call back when it ends)."""
        job = EmuJob(
            id=uuid.uuid4().hex,
            provider=provider,
            model=model,
            body=body,
            video=video,
            cost=cost,
            webhook=webhook,
            base=base,
        )
        job.created_at += timedelta(seconds=self.clock_skew)
        if self._failures:
            job.failure = self._failures.popleft()
        if self.duration_sampler is not None:
            job.duration = max(0.0, float(self.duration_sampler(job)))
        self.jobs[job.id] = job
        seconds = job.duration if job.duration is not None else self.job_seconds
        if webhook is not None and self.tasks is not None and seconds is not None:
            self.tasks.start_soon(self._end_later, job, seconds)
        return job

    async def _end_later(self, job: EmuJob, seconds: float) -> None:
        await anyio.sleep(max(0.0, job.started + seconds - time.monotonic()))
        if not job.terminal and self._ready(job):
            self._end(job)

    def _end(self, job: EmuJob) -> None:
        job.finished = time.monotonic() if job.duration is None else job.started + job.duration
        if job.failure is not None:
            job.state, job.error = "failed", job.failure
        else:
            job.state = "completed"
        if job.webhook is not None and self.send_webhooks and self.tasks is not None:
            self.tasks.start_soon(self._deliver_quietly, job)

    async def _deliver_quietly(self, job: EmuJob) -> None:
        try:
            await self.deliver_webhook(job)
        except httpx.HTTPError:
            self.webhook_deliveries.append((job.id, 0))

    def signed_webhook(
        self, job: EmuJob, *, delivery_id: str | None = None, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body WaveSpeed would send about ``job`` now."""
        from .wavespeed import prediction

        body = json.dumps(prediction(job, job.base)).encode()
        delivery = delivery_id or f"msg_{uuid.uuid4().hex}"
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery,
            "webhook-timestamp": str(stamp),
            # WaveSpeed's documented scheme, written out here rather than borrowed from the client.
            "webhook-signature": "v3,"
            + hmac.new(
                self.webhook_secret.removeprefix("whsec_").encode(),
                f"{delivery}.{stamp}.".encode() + body,
                hashlib.sha256,
            ).hexdigest(),
        }
        return headers, body

    async def deliver_webhook(
        self,
        job: EmuJob,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> httpx.Response:
        """POST a signed callback about ``job`` (or the given headers and body) to its webhook URL."""
        signed_headers, signed_body = self.signed_webhook(job)
        target = url or job.webhook
        if target is None:
            raise ValueError("this job was submitted without a webhook URL")
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                target,
                headers=dict(headers) if headers is not None else signed_headers,
                content=signed_body if body is None else body,
            )
        self.webhook_deliveries.append((job.id, response.status_code))
        return response

    def poll(self, job: EmuJob) -> None:
        """Count one status poll and move the job along."""
        job.polls += 1
        if job.terminal:
            return
        if self._ready(job):
            # A job with a drawn duration ended at its start plus that duration, whenever it is polled.
            self._end(job)
        elif job.polls == 1 and self._by_polls(job) and self.polls_to_complete >= 2:
            job.state = "queued"
        else:
            job.state = "running"

    def progress(self, job: EmuJob) -> float:
        """A 0..1 fraction for a job that is still running."""
        if job.terminal:
            return 1.0
        seconds = job.duration if job.duration is not None else self.job_seconds
        if seconds:
            fraction = (time.monotonic() - job.started) / seconds
        else:
            fraction = job.polls / (self.polls_to_complete + 1)
        return round(min(0.95, max(0.0, fraction)), 2)

    def upload(self, filename: str, content_type: str, size: int, data: bytes | None) -> Upload:
        """Store an uploaded file (``data`` None: waiting for its PUT)."""
        item = Upload(uuid.uuid4().hex, filename, content_type, size, data)
        self.uploads[item.token] = item
        return item

    async def video(self, job: EmuJob) -> bytes:
        """The job's MP4, rendered on first use (in a worker thread) and then cached."""
        if job.rendered is None:
            from .video import render_mp4

            render = partial(
                render_mp4,
                self.image_bytes(job.video.image),
                job.video,
                fps=self.fps,
                scale=self.render_scale,
                seed=int(job.id[:8], 16),
            )
            job.rendered = await anyio.to_thread.run_sync(render)
        return job.rendered

    def image_bytes(self, ref: str) -> bytes | None:
        """The bytes of an image given as a data: URI or as one of this emulator's uploads.

        Other URLs give None: the emulator never fetches anything.
        """
        if ref.startswith("data:"):
            return media.data_uri_bytes(ref)
        parts = urlsplit(ref).path.split("/")
        if len(parts) >= 4 and parts[1:3] == ["sandbox", "uploads"]:
            item = self.uploads.get(parts[3])
            return item.data if item else None
        return None

    def _ready(self, job: EmuJob) -> bool:
        if job.released:
            return True
        if self.hold:
            return False
        if job.duration is not None:
            return time.monotonic() - job.started >= job.duration
        if self.job_seconds is not None:
            return time.monotonic() - job.started >= self.job_seconds
        return job.polls > self.polls_to_complete

    def _by_polls(self, job: EmuJob) -> bool:
        return job.duration is None and self.job_seconds is None


class LogNormalDurations:
    """A seeded ``duration_sampler``: each job runs a log-normal time whose median is its model's.

    ``medians`` maps the provider's model id (``EmuJob.model``) to a median in seconds; other
    models get ``default``. With ``key`` (e.g. the job's prompt), a job's duration depends only on
    the seed and its key, so two emulators given the same jobs draw the same durations whatever
    order they arrive in; without it, draws follow one seeded stream in arrival order.
    """

    def __init__(
        self,
        medians: Mapping[str, float],
        sigma: float = 0.3,
        *,
        seed: int = 0,
        default: float = 60.0,
        key: Callable[[EmuJob], str] | None = None,
    ) -> None:
        self.medians = dict(medians)
        self.sigma = sigma
        self.seed = seed
        self.default = default
        self.key = key
        self._stream = random.Random(seed)

    def __call__(self, job: EmuJob) -> float:
        median = self.medians.get(job.model, self.default)
        rng = self._stream if self.key is None else random.Random(f"{self.seed}:{self.key(job)}")
        return rng.lognormvariate(math.log(median), self.sigma)


async def _not_found(request: Request) -> Response:
    return error_response(vendor_of("unknown", request.url.path), 404, "Not Found")
