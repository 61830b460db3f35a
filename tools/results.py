"""What a job looks like to an agent: structured content, a short text, a resource link and,
once the video is saved, its contact sheet (or, without one, its poster frame).

The core's modules are imported where they are used: they are loaded with the core, after the
server's first answers (``server.core_handle``).
"""

from __future__ import annotations

import base64
import logging
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent

from server.ledger import Ledger, ledger_summary

if TYPE_CHECKING:
    from server.core import Core, EstimateResult
    from server.jobs.store import Job

log = logging.getLogger("wan_video_mcp.tools")

JOB_URI = "wan-video://jobs/{job_id}"
JOB_VIDEO_URI = "wan-video://jobs/{job_id}/video"
JOBS_URI = "wan-video://jobs"
FRAME_FIRST_URI = "wan-video://jobs/{job_id}/frames/first"
FRAME_LAST_URI = "wan-video://jobs/{job_id}/frames/last"
FRAME_AT_URI = "wan-video://jobs/{job_id}/frames/at/{seconds}"
CONTACT_SHEET_URI = "wan-video://jobs/{job_id}/contact-sheet"
# A poster is a few tens of KB; anything much bigger is not one of ours.
MAX_POSTER_BYTES = 512 * 1024
BILLED_CANCEL = (
    "Cancelled after the provider had the job, which cannot be stopped there: it is billed as usual "
    "and its video is still saved."
)
UNSURE_CANCEL = (
    "Cancelled while the submission was unconfirmed: if the provider has the job, it cannot be "
    "stopped there and is billed as usual."
)


def cancel_note(job: Job) -> str | None:
    """What a cancel that came too late to stop the job means for the bill, if one was asked for."""
    if job.cancel_requested_at is None or job.status in ("cancelled", "failed"):
        return None
    return BILLED_CANCEL if job.submit_state == "accepted" else UNSURE_CANCEL


def job_uri(job_id: str) -> str:
    return JOB_URI.format(job_id=job_id)


def job_video_uri(job_id: str) -> str:
    return JOB_VIDEO_URI.format(job_id=job_id)


def job_record(job: Job, core: Core) -> dict[str, Any]:
    """The job as structured content (and as its resource's JSON)."""
    from server.jobs.runner import describe_progress
    from server.media.frames import sheet_path

    now = time.time()
    _, progress_text = describe_progress(job, core.models.get(job.model), now)
    record: dict[str, Any] = {
        "job_id": job.id,
        "model": job.model,
        "status": job.status,
        "progress": progress_text,
        "created_at": _iso(job.created_at),
        "elapsed_seconds": round((job.finished_at or now) - job.created_at, 1),
        "estimate_usd": job.estimate_usd,
        "estimate_source": job.estimate_source,
    }
    if job.status == "completed":
        record["video_url"] = job.video_url
        if job.local_path:
            record["local_path"] = job.local_path
        if job.poster_path:
            record["poster_path"] = job.poster_path
        if job.local_path and _existing(str(sheet_path(Path(job.local_path)))) is not None:
            record["contact_sheet"] = CONTACT_SHEET_URI.format(job_id=job.id)
        if job.local_path:
            record["last_frame"] = FRAME_LAST_URI.format(job_id=job.id)
    if job.status in ("failed", "unconfirmed", "cancelled"):
        record["error"] = job.error or "unknown error"
    if job.cancel_requested_at is not None:
        record["cancel_requested_at"] = _iso(job.cancel_requested_at)
    if (note := cancel_note(job)) is not None:
        record["cancel_note"] = note
    if job.cost_usd is not None:
        record["cost_usd"] = job.cost_usd
    if job.inference_ms is not None:
        record["inference_seconds"] = round(job.inference_ms / 1000, 1)
    if job.last_error and (not job.is_final or job.status == "completed"):
        record["warning"] = job.last_error
    if job.sandbox != core.settings.sandbox and not job.is_final:
        record["warning"] = (
            f"This job was made by a {'sandbox' if job.sandbox else 'real (non-sandbox)'} server, so this "
            f"one does not follow it; start the server {'with' if job.sandbox else 'without'} --sandbox to."
        )
    if job.notes:
        record["notes"] = list(job.notes)
    if job.sandbox:
        record["sandbox"] = True
    record["parameters"] = job.params
    return record


def next_step(job: Job) -> str:
    match job.status:
        case "completed":
            if job.local_path:
                where = f" Saved at {job.local_path}."
            elif job.last_error:
                where = f" {job.last_error}"
            else:
                where = ""
            return f"Video: {job.video_url}.{where}"
        case "failed":
            return (
                f"Failed: {job.error}. Fix the cause and call the generate tool again if you want a new take."
            )
        case "cancelled":
            return f"{job.error}"
        case "unconfirmed":
            return (
                f"{job.error} Do not submit it again yet: call get_result with job_id '{job.id}' "
                "later to see whether the provider has it."
            )
        case _:
            return (
                f"Still {job.status}. Call get_result with job_id '{job.id}' (and wait_seconds) "
                "to keep waiting."
            )


async def job_result(
    job: Job,
    core: Core,
    *,
    duplicate: bool = False,
    takes: Sequence[tuple[Job, bool]] = (),
) -> CallToolResult:
    """A generate or get_result answer; ``duplicate`` when a generate call was answered with an
    earlier job because it repeated that job's request.

    Any take of a variants call answers for every take: ``takes`` as a generate call got them,
    or, when not given, the takes journaled in its group.
    """
    if not takes and job.group_id is not None:
        takes = [(take, False) for take in await core.store.group(job.group_id)]
    record = job_record(job, core)
    sandbox = " [sandbox: emulated provider, no cost]" if job.sandbox else ""
    text = f"Job {job.id} ({job.model}) is {job.status}.{sandbox} {next_step(job)}"
    if "cancel_note" in record:
        text += f" {record['cancel_note']}"
    if duplicate:
        record["duplicate_of_earlier_request"] = True
        text = (
            f"This request repeats job {job.id}, so it was not paid for again (even with seed -1). "
            "For a different take, call again with new_take=true. " + text
        )
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    if job.status == "completed":
        content.extend(completed_blocks(job))
    failed = job.status == "failed"
    group_id = next((take.group_id for take, _ in takes if take.group_id), job.id)
    if len(takes) > 1:
        record["group_id"] = group_id
        record["takes"] = [_take_record(take, repeat) for take, repeat in takes]
        failed = all(take.status == "failed" for take, _ in takes)
        content[0] = TextContent(type="text", text=_takes_text(group_id, job.model, takes, sandbox))
        for take, _ in takes:
            if take.status == "completed" and take.id != job.id:
                content.extend(completed_blocks(take))
    return CallToolResult(content=content, structured_content=record, is_error=failed)


def _take_record(job: Job, repeat: bool) -> dict[str, Any]:
    take: dict[str, Any] = {"job_id": job.id, "seed": job.params.get("seed"), "status": job.status}
    if job.status == "completed":
        take["video_url"] = job.video_url
        if job.local_path:
            take["local_path"] = job.local_path
    if job.status in ("failed", "unconfirmed", "cancelled"):
        take["error"] = job.error or "unknown error"
    if repeat:
        take["duplicate_of_earlier_request"] = True
    return take


def _takes_text(group_id: str, model: str, takes: Sequence[tuple[Job, bool]], sandbox: str) -> str:
    lines = [f"{len(takes)} takes of {model}, one job each.{sandbox}"]
    for number, (take, repeat) in enumerate(takes, start=1):
        again = " (repeats an earlier request; not paid again)" if repeat else ""
        lines.append(f"Take {number}: job {take.id}, seed {take.params.get('seed')}: {take.status}{again}.")
    if any(take.is_live or take.status == "unconfirmed" for take, _ in takes):
        lines.append(
            f"Call get_result with job_id '{group_id}' (and wait_seconds) to follow every take; "
            "do not generate again."
        )
    else:
        lines.append("Every take has ended; the contact sheets below show each completed one.")
    return "\n".join(lines)


def completed_blocks(job: Job) -> list[ContentBlock]:
    """A completed job's links (its record, then the saved MP4 when there is one) and poster frame.

    The record's link stays first, so a client that reads the first link keeps getting the JSON.
    """
    from server.media.frames import sheet_path

    blocks: list[ContentBlock] = [
        ResourceLink(
            type="resource_link",
            uri=job_uri(job.id),
            name=f"{job.id}.json",
            title=f"Job {job.id}",
            description="The job's record: parameters, status, video URL and local file.",
            mime_type="application/json",
        )
    ]
    video = _existing(job.local_path)
    if video is not None:
        path, size = video
        blocks.append(
            ResourceLink(
                type="resource_link",
                uri=job_video_uri(job.id),
                name=path.name,
                title=f"Video of job {job.id}",
                description=f"The MP4, as saved at {path}.",
                mime_type="video/mp4",
                size=size,
            )
        )
    # The contact sheet stands in for the poster: several frames show the motion, not one.
    sheet = poster_base64(str(sheet_path(Path(job.local_path)))) if job.local_path else None
    poster = sheet or poster_base64(job.poster_path)
    if poster is not None:
        blocks.append(ImageContent(type="image", data=poster, mime_type="image/jpeg"))
    return blocks


def _existing(path: str | None) -> tuple[Path, int] | None:
    """A regular file still on disk, and its size."""
    if not path:
        return None
    try:
        facts = Path(path).stat()
    except OSError:
        return None
    return (Path(path), facts.st_size) if stat.S_ISREG(facts.st_mode) else None


def poster_base64(path: str | None) -> str | None:
    """The poster JPEG as base64, if it is still on disk and poster-sized."""
    poster = _existing(path)
    if poster is None or poster[1] > MAX_POSTER_BYTES:
        return None
    try:
        data = poster[0].read_bytes()
    except OSError as exc:
        log.warning("could not read the poster %s: %s", poster[0], exc)
        return None
    return base64.b64encode(data).decode("ascii")


def estimate_result(result: EstimateResult) -> CallToolResult:
    """An estimate answer."""
    est = result.estimate
    record: dict[str, Any] = {
        "model": result.model,
        "usd": est.usd,
        "currency": "USD",
        "source": est.source,
        "basis": est.basis,
        "parameters": result.parameters,
        "priced_by": list(result.priced_by),
        "not_priced": list(result.not_priced),
    }
    if result.note:
        record["note"] = result.note
    if result.sandbox:
        record["sandbox"] = True
    caveat = (
        ""
        if est.source != "unverified_estimate"
        else " (unverified estimate: the provider publishes no price)"
    )
    text = f"{result.model}: ${est.usd:.2f}{caveat} for {_shown(result.parameters)}. Source: {est.basis}."
    if result.not_priced:
        text += f" {', '.join(result.not_priced)} do not change the price."
    if result.sandbox:
        text += " [sandbox: nothing is charged here; this is what the real provider would cost]"
    if result.note:
        text += f" {result.note}"
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=record)


def ledger_result(ledger: Ledger, core: Core) -> CallToolResult:
    """A list_jobs answer: short job records and the spend summary."""
    jobs = [
        {
            key: value
            for key, value in job_record(job, core).items()
            if key
            in (
                "job_id",
                "model",
                "status",
                "created_at",
                "estimate_usd",
                "cost_usd",
                "video_url",
                "error",
                "cancel_requested_at",
                "cancel_note",
            )
        }
        for job in ledger.jobs
    ]
    summary = ledger_summary(ledger)
    total = summary["total"]
    text = (
        f"{total['jobs']} job(s) match; showing {len(jobs)}. Charged (reported cost, else estimate): "
        f"${total['charged_usd']:.2f}."
    )
    if ledger.budget is not None:
        text += f" Budget left: ${ledger.budget['left_usd']:.2f} of ${ledger.budget['budget_usd']:.2f}."
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content={"jobs": jobs, "summary": summary}
    )


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in values.items()) or "any arguments"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
