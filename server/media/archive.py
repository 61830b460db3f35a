"""A finished job's video saved for good: downloaded, verified, named, described, with a poster.

The download streams into a hidden temporary file in the output folder, capped in size, and is
renamed to its final name only after its length matches ``Content-Length`` and every frame
decodes; a failed or interrupted attempt never leaves a file under the final name. A failed
attempt is retried (up to ``DOWNLOAD_ATTEMPTS``) when trying again may help; after that the job
completes with its provider URL and a warning (the runner records it).

Beside ``<name>.mp4`` go ``<name>.jpg`` (the poster frame) and ``<name>.json`` (the sidecar: prompt,
parameters, seed, model, price, the provider URL without its query string and when it expires).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from server.catalog import MIB, ModelSpec
from server.jobs.store import Job
from server.media.fetch import FetchError, UrlPolicy, open_checked
from server.media.video import VideoError, VideoFacts, inspect_video, video_record
from server.providers.http import backoff, safe_url
from server.settings import Settings

log = logging.getLogger("wan_video_mcp.media")

MAX_VIDEO_BYTES = 1024 * MIB
DOWNLOAD_ATTEMPTS = 3
CHUNK = 256 * 1024
# How long each provider documents keeping its output URLs (None: not documented).
URL_LIFETIME_DAYS: dict[str, float | None] = {"wavespeed": 7.0, "vtrix": None}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class SavedVideo:
    """The files an archived job left in the output folder."""

    video: Path
    poster: Path
    sidecar: Path
    facts: VideoFacts


def safe_part(text: str, limit: int = 64) -> str:
    """``text`` reduced to letters, digits, ``_`` and ``-``: a file name part that stays in its folder."""
    cleaned = _UNSAFE_NAME.sub("-", text).strip("-_")[:limit]
    return cleaned or "job"


def file_stem(job: Job) -> str:
    """``<local date and time>_<job id>`` (a job id starts with its model), in safe characters."""
    when = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(job.created_at))
    ident = job.id if job.id.startswith(job.model) else f"{job.model}_{job.id}"
    return f"{when}_{safe_part(ident, 120)}"


class Archiver:
    """Downloads a job's video into ``Settings.videos_dir`` under the URL policy."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient, policy: UrlPolicy) -> None:
        self._settings = settings
        self._client = client
        self._policy = policy

    async def save(self, job: Job, spec: ModelSpec | None) -> SavedVideo:
        """Download, verify and keep ``job.video_url``; write its poster and sidecar.

        Raises:
            FetchError: the download was refused or kept failing.
            VideoError: what arrived is not a video that decodes.
        """
        assert job.video_url is not None
        folder = self._settings.videos_dir.expanduser()
        await anyio.to_thread.run_sync(lambda: folder.mkdir(parents=True, exist_ok=True))
        stem = file_stem(job)
        video = folder / f"{stem}.mp4"
        if video.resolve().parent != folder.resolve():
            raise FetchError(f"Refused an output name that leaves the folder: {stem!r}.")
        facts = await self._download_verified(job.video_url, folder, video)
        poster = video.with_suffix(".jpg")
        sidecar = video.with_suffix(".json")
        record = sidecar_record(job, spec, video, poster, facts)
        await anyio.to_thread.run_sync(write_atomic, poster, facts.poster_jpeg)
        await anyio.to_thread.run_sync(
            write_atomic, sidecar, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()
        )
        log.info("saved %s as %s", job.id, video)
        return SavedVideo(video, poster, sidecar, facts)

    async def _download_verified(self, url: str, folder: Path, final: Path) -> VideoFacts:
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            part = await anyio.to_thread.run_sync(_temp_file, folder, final.stem)
            try:
                await self._download(url, part)
                facts = await anyio.to_thread.run_sync(inspect_video, part)
                await anyio.to_thread.run_sync(os.replace, part, final)
                return facts
            except (FetchError, VideoError) as exc:
                retryable = isinstance(exc, VideoError) or exc.retryable
                if not retryable or attempt == DOWNLOAD_ATTEMPTS:
                    raise
                log.info("download of %s failed (%s); retrying", safe_url(url), exc)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
            await anyio.sleep(backoff(attempt, self._settings.poll))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download(self, url: str, part: Path) -> None:
        shown = safe_url(url)
        try:
            async with open_checked(
                self._client, self._policy, url, headers={"Accept-Encoding": "identity"}
            ) as response:
                status = response.status_code
                if status != 200:
                    raise FetchError(
                        f"The video URL {shown} answered {status}.",
                        retryable=status in (408, 429) or status >= 500,
                    )
                declared = _content_length(response)
                if declared is not None and declared > MAX_VIDEO_BYTES:
                    raise FetchError(
                        f"The video is {declared // MIB} MB, over the {MAX_VIDEO_BYTES // MIB} MB cap."
                    )
                received = 0
                async with await anyio.open_file(part, "wb") as out:
                    async for chunk in response.aiter_raw(CHUNK):
                        received += len(chunk)
                        if received > MAX_VIDEO_BYTES:
                            raise FetchError(f"The video is over the {MAX_VIDEO_BYTES // MIB} MB cap.")
                        await out.write(chunk)
        except httpx.TransportError as exc:
            raise FetchError(
                f"The download of {shown} was interrupted ({type(exc).__name__}).", retryable=True
            ) from exc
        if declared is not None and received != declared:
            raise FetchError(
                f"The download of {shown} stopped at {received} of {declared} bytes.", retryable=True
            )
        if received == 0:
            raise FetchError(f"The video URL {shown} answered with an empty body.", retryable=True)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _temp_file(folder: Path, stem: str) -> Path:
    # The writer's pid is in the name so a restarted server can tell an orphan from a live download.
    fd, name = tempfile.mkstemp(prefix=f".{stem}.{os.getpid()}~", suffix=".part", dir=folder)
    os.close(fd)
    return Path(name)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` through a hidden temporary file in the same folder and a rename."""
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}~", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def url_expiry(job: Job) -> str:
    """When the provider's URL stops working, as far as the provider documents it."""
    days = URL_LIFETIME_DAYS.get(job.provider)
    if days is None:
        return f"unknown: {job.provider} does not document how long it keeps outputs"
    start = job.submitted_at or job.created_at
    return _iso(start + days * 86400)


def sidecar_record(
    job: Job, spec: ModelSpec | None, video: Path, poster: Path, facts: VideoFacts
) -> dict[str, Any]:
    """What the JSON file beside the video says about it."""
    params = job.params
    return {
        "job_id": job.id,
        "model": job.model,
        "model_title": spec.title if spec else None,
        "provider": job.provider,
        "provider_model_id": spec.model_id if spec else None,
        "provider_job_id": job.provider_job_id,
        "prompt": params.get("prompt"),
        "negative_prompt": params.get("negative_prompt"),
        "seed": params.get("seed"),
        "parameters": params,
        "notes": list(job.notes),
        "estimate_usd": job.estimate_usd,
        "estimate_source": job.estimate_source,
        "cost_usd": job.cost_usd,
        "provider_url": safe_url(job.video_url or ""),
        "provider_url_expires": url_expiry(job),
        "created_at": _iso(job.created_at),
        "archived_at": _iso(time.time()),
        "sandbox": job.sandbox,
        "video": video_record(video, facts),
        "poster": poster.name,
    }


_WRITER = re.compile(r"\.(\d+)~[^/]*\.part$")


def sweep_partials(folder: Path, older_than: float = 3600.0) -> int:
    """Delete temporary downloads that stopped processes left behind; returns how many.

    A ``.part`` file goes when the process named in it no longer runs, or, for files without a
    writer's pid, when it is older than ``older_than`` seconds: another process sharing the folder
    may be writing one right now.
    """
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for path in folder.glob(".*.part"):
        # On Windows os.kill(pid, 0) would terminate the process, so only age counts there.
        match = _WRITER.search(path.name) if os.name != "nt" else None
        with contextlib.suppress(OSError):
            # Age also counts for a named writer: its pid may have been reused, or be a zombie.
            old = path.stat().st_mtime < cutoff
            orphan = old or (match is not None and not _running(int(match.group(1))))
            if orphan and path.is_file():
                path.unlink()
                removed += 1
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
