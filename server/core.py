"""The server core the MCP tools call: estimate, generate, get a result, list jobs.

``open_core`` owns every long-lived resource (HTTP client, journal, task group of pollers and,
in sandbox mode, the provider emulator) and closes them in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from pydantic import SecretStr

from server.catalog import ModelSpec, ProviderName, load_catalog
from server.catalog.params import (
    NOTHING_SENT,
    SERVER_ARGUMENTS,
    build_body,
    validate_estimate,
    validate_generate,
)
from server.catalog.pricing import Estimate, catalog_price, round_usd
from server.errors import ConfirmationRequired, InvalidRequest, ProviderError, WanMcpError
from server.jobs.runner import JobRunner, ProgressCallback, Submission
from server.jobs.store import Job, JobStore, new_task_id, open_store
from server.jobs.variants import group_estimate, parse_variants, take_values, wait_for_takes
from server.media import MediaService
from server.media.archive import sweep_partials
from server.providers import build_providers
from server.providers.deferred import DeferredTransport
from server.providers.http import register_secret
from server.providers.webhooks import parse_callback, verify
from server.settings import MAX_WAIT_SECONDS, Settings

log = logging.getLogger("wan_video_mcp")

SANDBOX_KEY = "sandbox-key"


@dataclass(frozen=True, slots=True)
class CallOptions:
    """A generate call's own arguments (``SERVER_ARGUMENTS``), checked."""

    wait_seconds: float
    new_take: bool
    fix_image: bool
    confirm_cost_usd: float | None
    variants: int = 1


@dataclass(frozen=True, slots=True)
class EstimateResult:
    """A price and what it is based on."""

    model: str
    estimate: Estimate
    parameters: dict[str, Any]
    priced_by: tuple[str, ...] = ()
    not_priced: tuple[str, ...] = ()
    note: str | None = None
    sandbox: bool = False


class Core:
    """What the tools call. Built by ``open_core``."""

    def __init__(self, settings: Settings, models: Mapping[str, ModelSpec], runner: JobRunner) -> None:
        self.settings = settings
        self.models = dict(models)
        self.runner = runner
        # Per provider, the secret its callbacks are signed with (webhooks are on for those).
        self.webhook_secrets: dict[ProviderName, str] = {}

    @property
    def store(self) -> JobStore:
        return self.runner.store

    def model(self, slug: str) -> ModelSpec:
        try:
            return self.models[slug]
        except KeyError:
            raise InvalidRequest(
                f"The model '{slug}' is not enabled on this server; enabled: {', '.join(self.models)}."
            ) from None

    async def estimate(self, spec: ModelSpec, arguments: Mapping[str, Any]) -> EstimateResult:
        """The price of one job (or of ``variants`` takes) with these arguments, and its source.

        Takes every argument the generate tool takes, checked the same way, none required. Nothing
        is read, uploaded or submitted; only a price quote may be asked for (priced values only).
        """
        options = self.call_options(arguments)
        given = [k for k, v in arguments.items() if v is not None and k not in SERVER_ARGUMENTS]
        values = validate_estimate(spec, {k: v for k, v in arguments.items() if k not in SERVER_ARGUMENTS})
        priced = {p.name: values[p.name] for p in spec.priced_params}
        estimate = catalog_price(spec, priced)
        note = None
        provider = self.runner.provider_for(spec)
        if spec.price.quote and self._has_key(spec):
            try:
                quoted = await provider.quote(spec, build_body(spec, priced))
            except ProviderError as exc:
                note = f"The provider's quote was unavailable ({exc}); this is the catalog's estimate."
            else:
                if quoted is not None:
                    estimate = Estimate(
                        usd=round_usd(quoted),
                        source="provider_quote",
                        basis=f"{spec.provider}'s own quote for these parameters",
                    )
        return EstimateResult(
            model=spec.slug,
            estimate=group_estimate(estimate, options.variants),
            parameters=priced,
            priced_by=tuple(name for name in given if name in priced),
            not_priced=tuple(name for name in given if name not in priced),
            note=note,
            sandbox=self.settings.sandbox,
        )

    def _has_key(self, spec: ModelSpec) -> bool:
        key = self.settings.wavespeed_api_key if spec.provider == "wavespeed" else self.settings.vtrix_api_key
        return key is not None

    def parse_wait(self, value: Any) -> float:
        """``wait_seconds`` checked: a number from 0 to the maximum; default when absent."""
        if value is None:
            return self.settings.default_wait_seconds
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= MAX_WAIT_SECONDS
        ):
            raise InvalidRequest(
                f"'wait_seconds' must be a number from 0 to {MAX_WAIT_SECONDS:.0f}; got {value!r}. "
                "Nothing was sent and nothing was charged."
            )
        return float(value)

    def call_options(self, arguments: Mapping[str, Any]) -> CallOptions:
        """The server's own arguments of a generate (or estimate) call, checked.

        Raises:
            InvalidRequest: one of them has the wrong type or range.
        """
        confirm = arguments.get("confirm_cost_usd")
        if confirm is not None and (
            isinstance(confirm, bool) or not isinstance(confirm, int | float) or confirm < 0
        ):
            raise InvalidRequest(
                f"'confirm_cost_usd' must be a number of dollars; got {confirm!r}. {NOTHING_SENT}"
            )
        return CallOptions(
            wait_seconds=self.parse_wait(arguments.get("wait_seconds")),
            new_take=_flag(arguments.get("new_take"), "new_take"),
            fix_image=_flag(arguments.get("fix_image"), "fix_image"),
            confirm_cost_usd=None if confirm is None else float(confirm),
            variants=parse_variants(arguments.get("variants")),
        )

    def price_to_confirm(self, spec: ModelSpec, arguments: Mapping[str, Any]) -> Estimate | None:
        """The estimate when it is above ``WAN_MCP_CONFIRM_ABOVE_USD`` and not yet agreed to.

        Raises:
            InvalidRequest: the arguments are invalid (the generate call reports it).
        """
        threshold = self.settings.spend.confirm_above_usd
        if threshold is None:
            return None
        model_arguments = {k: v for k, v in arguments.items() if k not in SERVER_ARGUMENTS}
        estimate = catalog_price(spec, validate_generate(spec, model_arguments))
        estimate = group_estimate(estimate, parse_variants(arguments.get("variants")))
        if estimate.usd <= threshold + 1e-9:
            return None
        agreed = arguments.get("confirm_cost_usd")
        if isinstance(agreed, int | float) and not isinstance(agreed, bool) and agreed >= estimate.usd - 1e-9:
            return None
        return estimate

    async def generate(
        self,
        spec: ModelSpec,
        arguments: Mapping[str, Any],
        on_progress: ProgressCallback | None = None,
        *,
        user_confirmed: bool = False,
        as_task: bool = False,
    ) -> Submission:
        """Validate, price, journal and submit one job, then wait up to ``wait_seconds``.

        ``as_task``: return as soon as the job's row (with its task handle) is committed; the
        submit follows in the background and ``wait_seconds`` is not waited.

        Raises:
            ConfirmationRequired: the price needs the user's agreement (``confirm_cost_usd``).
        """
        arguments = dict(arguments)
        options = self.call_options(arguments)
        to_confirm = None if user_confirmed else self.price_to_confirm(spec, arguments)
        values = validate_generate(spec, {k: v for k, v in arguments.items() if k not in SERVER_ARGUMENTS})
        if to_confirm is not None:
            threshold = self.settings.spend.confirm_above_usd or 0.0
            what = "job" if options.variants == 1 else f"set of {options.variants} takes"
            raise ConfirmationRequired(
                f"This {spec.slug} {what} costs about ${to_confirm.usd:.2f} ({to_confirm.basis}), above the "
                f"${threshold:.2f} that needs the user's agreement. Nothing was sent. Ask the user; if they "
                f"agree, call again with confirm_cost_usd={to_confirm.usd:.2f}."
            )
        estimate = catalog_price(spec, values)
        if options.variants > 1:
            takes = take_values(spec, values, options.variants, new_take=options.new_take)
            submissions = await self.runner.submit_takes(
                spec, takes, estimate, new_take=options.new_take, fix_image=options.fix_image, as_task=as_task
            )
            started = [s.job for s in submissions]
            wait = 0.0 if as_task else options.wait_seconds
            jobs = await wait_for_takes(self.runner, started, wait, on_progress)
            return Submission(
                jobs[0],
                duplicate=submissions[0].duplicate,
                takes=tuple(zip(jobs, (s.duplicate for s in submissions), strict=True)),
            )
        submission = await self.runner.submit(
            spec, values, estimate, new_take=options.new_take, fix_image=options.fix_image, as_task=as_task
        )
        if as_task or options.wait_seconds <= 0 or not submission.job.is_live:
            return submission
        job = await self.runner.wait(submission.job.id, options.wait_seconds, on_progress)
        return Submission(job, duplicate=submission.duplicate)

    async def get_result(
        self, job_id: str, wait_seconds: float | None, on_progress: ProgressCallback | None = None
    ) -> Job:
        """A job's journal row, after waiting up to ``wait_seconds`` for it to end."""
        wait = self.parse_wait(wait_seconds)
        job = await self.store.get(job_id)
        if job.group_id is not None:  # any take of a variants call answers for all of them
            jobs = [await self._settled(take) for take in await self.store.group(job.group_id)]
            settled = await wait_for_takes(self.runner, jobs, wait, on_progress)
            return next(take for take in settled if take.id == job.id)
        if job.status == "unconfirmed":
            job = await self.runner.reconcile(job)
        if not job.is_live or wait <= 0:
            await self.runner.follow(job)
            return job
        return await self.runner.wait(job_id, wait, on_progress)

    async def task(self, task_id: str) -> Job | None:
        """The job followed as ``task_id``, moved along as ``get_result`` would (without waiting)."""
        job = await self.store.by_task(task_id)
        return None if job is None else await self._settled(job)

    async def _settled(self, job: Job) -> Job:
        """The job, after looking an unconfirmed submission up at the provider; followed if live."""
        if job.status == "unconfirmed":
            job = await self.runner.reconcile(job)
        await self.runner.follow(job)
        return job

    async def ensure_task(self, job: Job) -> Job:
        """``job`` with a task handle (an earlier job a repeated request maps to may lack one)."""
        if job.task_id is not None:
            return job
        marked = await self.store.update_if(job.id, {"task_id": None}, task_id=new_task_id())
        return marked or await self.store.get(job.id)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: free before it is sent; once the provider has it, only recorded (billed)."""
        return await self.runner.cancel(job_id)

    async def receive_webhook(
        self, provider: ProviderName, headers: Mapping[str, str], body: bytes
    ) -> WebhookAnswer:
        """A provider's callback: verified, deduplicated, then confirmed by one status read.

        ``headers`` keyed in lower case. A refused delivery changes nothing, and its body is
        never logged.
        """
        secret = self.webhook_secrets.get(provider)
        if secret is None:
            return WebhookAnswer(404, "webhooks are not enabled for this provider")
        verdict = verify(headers, body, secret, time.time())
        if verdict != "ok":
            log.warning("refused a %s webhook: %s", provider, verdict.replace("_", " "))
            return WebhookAnswer(401 if verdict == "bad_signature" else 400, verdict)
        if not await self.store.first_delivery(f"{provider}:{headers['webhook-id']}", time.time()):
            log.info("ignored a replayed %s webhook", provider)
            return WebhookAnswer(409, "replayed")
        callback = parse_callback(body)
        if callback is None:
            return WebhookAnswer(400, "unreadable payload")
        job = await self.store.by_provider_job(provider, callback.task_id)
        if job is None:
            return WebhookAnswer(200, "unknown task; ignored")
        # Answer at once; the status read (and the download, by the lease holder) follow.
        self.runner.spawn(self.runner.confirm, provider, callback.task_id)
        return WebhookAnswer(202, "accepted")


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """The HTTP status and a short reason for a webhook delivery."""

    status: int
    reason: str


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false; got {value!r}. {NOTHING_SENT}")
    return value


@asynccontextmanager
async def effective_settings(settings: Settings) -> AsyncGenerator[Settings]:
    """``settings`` as they are, or, in sandbox mode, pointed at a running built-in emulator."""
    if not settings.sandbox:
        yield settings
        return
    from server.sandbox import Emulator, serve_emulator

    emulator = Emulator(wavespeed_key=SANDBOX_KEY, vtrix_key=SANDBOX_KEY)
    async with serve_emulator(emulator) as base_url:
        log.info("sandbox: every provider is the built-in emulator at %s", base_url)
        yield settings.model_copy(
            update={
                "wavespeed_base_url": base_url,
                "vtrix_base_url": base_url,
                "wavespeed_api_key": SecretStr(SANDBOX_KEY),
                "vtrix_api_key": SecretStr(SANDBOX_KEY),
            }
        )


@asynccontextmanager
async def open_core(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncGenerator[Core]:
    """Open the journal, the HTTP client and the pollers' task group; resume live jobs.

    ``transport`` lets tests mount a fake provider in-process (``httpx.ASGITransport``).
    """
    models = {m.slug: m for m in load_catalog().select(settings.models)}
    async with AsyncExitStack() as stack:
        settings = await stack.enter_async_context(effective_settings(settings))
        for key in (settings.wavespeed_api_key, settings.vtrix_api_key, settings.http.token):
            if key is not None:
                register_secret(key.get_secret_value())
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=transport if transport is not None else DeferredTransport(),
                timeout=httpx.Timeout(settings.http_timeout, connect=10.0),
                follow_redirects=False,
                headers={"User-Agent": "wan-video-mcp"},
            )
        )
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        runner_ref: list[JobRunner] = []
        stack.push_async_callback(_release_leases, runner_ref)
        task_group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(task_group.cancel_scope.cancel)
        runner = JobRunner(
            settings=settings,
            store=store,
            providers=build_providers(settings, client),
            models=models,
            media=MediaService(settings, client, store),
            task_group=task_group,
        )
        swept = sweep_partials(settings.videos_dir)
        if swept:
            log.info("removed %d unfinished download(s) left by a stopped process", swept)
        runner_ref.append(runner)
        core = Core(settings, models, runner)
        await _enable_webhooks(core)
        resumed = await runner.resume()
        if resumed:
            log.info("resumed following %d live job(s)", resumed)
        task_group.start_soon(store.watch, runner.external_change, name="journal watch")
        task_group.start_soon(runner.keep_leases, name="job leases")
        yield core


async def _enable_webhooks(core: Core) -> None:
    """With a public URL, ask each provider that has webhooks for the secret that signs them."""
    if core.settings.webhook_url is None:
        return
    for name, provider in core.runner.providers.items():
        try:
            secret = await provider.webhook_secret()
        except WanMcpError as exc:
            log.warning("%s webhooks stay off (polling only): %s", name, exc)
            continue
        if secret is not None:
            core.webhook_secrets[name] = secret
            core.runner.webhook_providers.add(name)
            log.info("%s calls back at %s", name, core.settings.webhook_url)


async def _release_leases(runner_ref: list[JobRunner]) -> None:
    # On the way out, hand this process's jobs over at once instead of after their lease runs out.
    with anyio.move_on_after(3, shield=True):
        for runner in runner_ref:
            try:
                await runner.release_leases()
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.warning("could not release job leases: %s", exc)


__all__ = ["Core", "EstimateResult", "WanMcpError", "open_core"]
