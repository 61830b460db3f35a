"""Media in and out: image inputs made ready for a provider, finished videos archived.

An image argument is an ``https://`` URL (passed on as it is; never fetched here), a ``data:`` URI
or a local file inside ``WAN_MCP_ALLOWED_DIRS``. The last two are decoded and held to the model's
documented limits (``[model.image]`` in the catalog) before anything is paid; with ``fix_image``
what can be fixed is fixed and said in the job's notes. Vtrix then gets a data: URI; WaveSpeed,
which does not document base64 inputs for Wan, gets the URL of an upload.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx

from server.catalog import ModelSpec, ParamSpec, size_of
from server.errors import InvalidRequest, JobNotFound
from server.jobs.store import Job, JobStore
from server.media.archive import Archiver
from server.media.fetch import Resolver, UrlPolicy
from server.media.frames import (
    extract_frame,
    is_frame_uri,
    parse_frame_uri,
    save_contact_sheet,
    saved_video,
)
from server.media.images import ReadyImage, check_image, decode_data_uri, read_local, refuse
from server.media.uploads import WaveSpeedUploads
from server.media.video import VideoError
from server.settings import Settings

log = logging.getLogger("wan_video_mcp.media")
SHEET_CONCURRENCY = 2


@dataclass(frozen=True, slots=True)
class PreparedInputs:
    """Arguments with every image turned into what the provider takes."""

    values: dict[str, Any]
    journal_values: dict[str, Any]
    notes: list[str] = field(default_factory=list[str])


@dataclass(frozen=True, slots=True)
class Archived:
    """A video saved on disk."""

    video_path: Path
    poster_path: str | None = None
    sheet_path: Path | None = None


def journal_form(value: str) -> str:
    """What the journal keeps of an image argument: never the bytes of a data: URI."""
    if value.startswith("data:"):
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f"{value.split(',', 1)[0]},sha256:{digest}"
    return value


def fit_to_image(param: ParamSpec, given: Any, image: ReadyImage | None) -> tuple[Any, str | None]:
    """A ``fits_image`` size: the one given, else the choice closest to the image's shape.

    Returns the value and a note when it was chosen, or when the given one will crop or stretch
    the image. Without the image's pixels (an https:// URL) the documented default applies.
    """
    if image is None:
        return (param.default if given is None else given), None
    shape = image.width / image.height
    choices = param.choices or ()
    best = min(choices, key=lambda c: abs(math.log(_aspect(c) / shape)))
    if given is None:
        note = (
            None
            if best == param.default
            else (
                f"{param.name}: {best}, to match the image ({image.width}x{image.height}); pass "
                f"{param.name} to choose another."
            )
        )
        return best, note
    if (_aspect(given) > 1) != (shape > 1) and abs(math.log(_aspect(given) / shape)) > 0.2:
        return given, (
            f"{param.name}: {given} does not match the image's shape ({image.width}x{image.height}), so "
            f"the provider will crop or stretch it; {best} keeps it."
        )
    return given, None


def _aspect(choice: Any) -> float:
    width, height = size_of(choice)
    return width / height


class MediaService:
    """Image inputs and video outputs for the job runner.

    ``store`` remembers uploads so the same bytes go up once a day; ``resolver`` replaces the
    system DNS resolver for the download rule (tests).
    """

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        store: JobStore | None = None,
        *,
        resolver: Resolver | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        # Sheets are not urgent: a burst of finished jobs makes them two at a time, not one per
        # worker thread (each decode holds its thumbnails and the decoder's frame buffers).
        self._sheets = anyio.CapacityLimiter(SHEET_CONCURRENCY)
        self._policy = UrlPolicy.from_settings(settings, resolver)
        self._uploads = WaveSpeedUploads(settings, client, store, self._policy)
        self._archiver = Archiver(settings, client, self._policy)

    async def prepare_images(
        self, spec: ModelSpec, values: Mapping[str, Any], *, fix: bool = False
    ) -> PreparedInputs:
        """Check every image argument and turn it into a URL or data: URI for the provider.

        Every image is checked before any is uploaded, so a refusal sends nothing at all.

        Raises:
            InvalidRequest: an image is unreadable, outside the allowed folders or the model's
                limits (and ``fix_image`` was not set or could not fix it).
            ProviderError, ConfigError: an upload failed; no job was created.
        """
        ready = dict(values)
        journal = dict(ready)
        checked: dict[str, ReadyImage] = {}
        notes: list[str] = []
        for param in spec.param:
            if param.kind != "image" or ready.get(param.name) is None:
                continue
            raw = str(ready[param.name]).strip()
            journal[param.name] = journal_form(raw)
            ready[param.name] = raw
            if raw.startswith("https://"):
                continue
            if is_frame_uri(raw):
                data, note = await self._frame(param.name, raw)
                notes.append(note)
                checked[param.name] = await self._checked(spec, param.name, data, fix)
                continue
            checked[param.name] = await self._check(spec, param.name, raw, fix)
        notes += [f"{name}: {'; '.join(image.changes)}." for name, image in checked.items() if image.changes]
        for param in spec.param:
            if param.fits_image:
                chosen, note = fit_to_image(param, ready.get(param.name), checked.get("image"))
                ready[param.name] = journal[param.name] = chosen
                if note:
                    notes.append(note)
        for name, image in checked.items():
            ready[name] = await self._deliver(spec, image)
        return PreparedInputs(values=ready, journal_values=journal, notes=notes)

    async def _check(self, spec: ModelSpec, name: str, raw: str, fix: bool) -> ReadyImage:
        limits = spec.image
        if raw.lower().startswith("http://"):
            raise refuse(name, "is an http:// URL; give an https:// URL, a data: URI or a local file.")
        if raw.startswith("data:"):
            data = await anyio.to_thread.run_sync(partial(decode_data_uri, name, raw, limits, fix))
        else:
            roots = self._settings.readable_dirs
            data = await anyio.to_thread.run_sync(partial(read_local, name, raw, roots, limits, fix))
        return await self._checked(spec, name, data, fix)

    async def _checked(self, spec: ModelSpec, name: str, data: bytes, fix: bool) -> ReadyImage:
        return await anyio.to_thread.run_sync(partial(check_image, name, data, spec.image, spec.slug, fix))

    async def _frame(self, name: str, raw: str) -> tuple[bytes, str]:
        """The PNG of a frame of one of our saved videos, and the note that says which it is."""
        ref = parse_frame_uri(raw)
        if ref is None:
            raise refuse(
                name,
                "is a wan-video:// URI but not a frame; use wan-video://jobs/{job_id}/frames/first, "
                ".../frames/last or .../frames/at/{seconds}.",
            )
        if self._store is None:
            raise refuse(name, "names a frame, but this server keeps no journal to find its job in.")
        try:
            video = await saved_video(self._store, ref.job_id)
            frame = await anyio.to_thread.run_sync(extract_frame, video, ref)
        except JobNotFound:
            raise refuse(
                name,
                f"names a frame of job '{ref.job_id}', which this server does not know; use a job_id "
                "from a generate call (list_jobs shows them).",
            ) from None
        except (InvalidRequest, VideoError) as exc:
            raise refuse(name, f"names a frame that cannot be used: {exc}.") from None
        note = (
            f"{name}: {ref.describe()} of job {ref.job_id} (frame {frame.index}, at {frame.seconds:g} s, "
            f"{frame.width}x{frame.height} px)."
        )
        return frame.png, note

    async def _deliver(self, spec: ModelSpec, image: ReadyImage) -> str:
        if spec.provider == "vtrix":
            return image.data_uri()
        return await self._uploads.upload(image.data, image.mime, image.extension)

    async def archive(self, job: Job, spec: ModelSpec | None) -> Archived | None:
        """Download, verify and keep the finished video with its poster frame and sidecar.

        Raises:
            FetchError, VideoError: nothing was kept under the final name; the runner completes
                the job with its provider URL and a warning.
        """
        if job.video_url is None:
            return None
        saved = await self._archiver.save(job, spec)
        try:
            sheet = await anyio.to_thread.run_sync(save_contact_sheet, saved.video, limiter=self._sheets)
        except (VideoError, OSError) as exc:
            log.warning("no contact sheet for %s (%s); the poster stands in", job.id, exc)
            sheet = None
        return Archived(video_path=saved.video, poster_path=str(saved.poster), sheet_path=sheet)


__all__ = ["Archived", "MediaService", "PreparedInputs", "journal_form"]
