"""Frames of our own videos: one frame as an image input, and a contact sheet of several.

A frame is named ``wan-video://jobs/{job_id}/frames/first``, ``.../frames/last`` or
``.../frames/at/{seconds}`` and is read from the job's saved MP4 (never downloaded again), decoded
with PyAV and encoded losslessly as PNG, so the next model gets exactly the pixels the last clip
ended on. A contact sheet is a small JPEG grid of evenly spaced frames, each labelled with its
time, so an agent can judge motion and the ending from one image.

Blocking (decoding, encoding); runs in a worker thread. PyAV and Pillow are imported lazily.
"""

# PyAV's stubs leave some members' types open, and Pillow's mention numpy, which may not be
# installed: member types come out "partially unknown" for no fault here.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from server.errors import InvalidRequest
from server.jobs.store import JobStore
from server.media.video import VideoError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream
    from PIL.Image import Image

FrameWhich = Literal["first", "last", "at"]
FRAME_PREFIX = "wan-video://jobs/"
_FRAME_URI = re.compile(
    r"^wan-video://jobs/(?P<job>[A-Za-z0-9_-]{1,200})/frames/(?P<which>first|last|at/(?P<at>\d{1,6}(?:\.\d{1,3})?))$"
)
SHEET_SUFFIX = ".sheet.jpg"
SHEET_TILES = 6
SHEET_COLUMNS = 3
SHEET_MAX_BYTES = 100 * 1024
# Each tile fits this box (aspect kept): landscape 320 px wide, portrait 240 px high.
_TILE_BOX = (320, 240)
_GAP = 4
_QUALITIES = (82, 72, 62, 50, 40)


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A frame of one of our jobs, as named by a ``wan-video://`` URI."""

    job_id: str
    which: FrameWhich
    seconds: float | None = None

    def describe(self) -> str:
        if self.which == "at":
            return f"the frame at {_seconds(self.seconds or 0.0)} s"
        return f"the {self.which} frame"

    @property
    def uri(self) -> str:
        tail = f"at/{_seconds(self.seconds or 0.0)}" if self.which == "at" else self.which
        return f"{FRAME_PREFIX}{self.job_id}/frames/{tail}"


def is_frame_uri(text: str) -> bool:
    """Whether ``text`` is meant as one of our URIs (well-formed or not)."""
    return text.startswith("wan-video://")


def parse_frame_uri(text: str) -> FrameRef | None:
    """The frame a URI names, or None when it is not a well-formed frame URI."""
    match = _FRAME_URI.match(text.strip())
    if match is None:
        return None
    which = match.group("which")
    if which.startswith("at/"):
        return FrameRef(match.group("job"), "at", float(match.group("at")))
    return FrameRef(match.group("job"), cast(FrameWhich, which))


async def saved_video(store: JobStore, job_id: str) -> Path:
    """The saved MP4 of a completed job.

    Raises:
        JobNotFound: no job has this id.
        InvalidRequest: the job has not completed, or its video is not (or no longer) on disk;
            the message says what to do.
    """
    job = await store.get(job_id)
    if job.status in ("queued", "running", "unconfirmed"):
        raise InvalidRequest(
            f"job '{job_id}' is {job.status}, not completed, so its video is not saved yet. Call "
            f"get_result with job_id '{job_id}' and wait_seconds until it completes, then try again."
        )
    if job.status == "failed":
        raise InvalidRequest(f"job '{job_id}' failed, so it has no video; pick a completed job.")
    if not job.local_path or not Path(job.local_path).is_file():  # noqa: ASYNC240 - one stat
        raise InvalidRequest(
            f"job '{job_id}' completed but its video is not saved on this machine "
            f"({job.last_error or 'the file is gone'}); download its video_url and pass an image instead."
        )
    return Path(job.local_path)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: PNG bytes, when it is shown and which it is (0-based)."""

    png: bytes
    seconds: float
    index: int
    width: int
    height: int


def extract_frame(path: Path, ref: FrameRef) -> Frame:
    """The frame ``ref`` names, decoded from the MP4 at ``path``.

    Raises:
        VideoError: the file does not decode, or ``ref.seconds`` is past the end (the message
            says how long the video is).
    """
    import av
    from av.error import FFmpegError

    wanted = ref.seconds or 0.0
    chosen: VideoFrame | None = None
    chosen_index = -1
    last_time = 0.0
    step = 0.0
    ended = True
    try:
        with av.open(str(path), mode="r") as container:
            stream, step = _video_stream(container)
            for index, frame in enumerate(container.decode(stream)):
                when = _time(frame, index, step)
                last_time = when
                # "at": the frame on screen at that moment, the last one to start by then.
                if ref.which == "at" and when > wanted + 1e-6:
                    ended = False
                    break
                chosen, chosen_index = frame, index
                if ref.which == "first":
                    ended = False
                    break
    except (FFmpegError, ValueError, OSError) as exc:
        raise VideoError(f"the saved video does not decode ({type(exc).__name__})") from exc
    if chosen is None:
        raise VideoError("the saved video has no frames")
    if ref.which == "at" and ended and wanted > last_time + step + 1e-6:
        raise VideoError(
            f"the video is {last_time + step:.2f} s long, so it has no frame at {wanted:g} s; "
            f"choose a time from 0 to {last_time:.2f}"
        )
    image = cast("Image", chosen.to_image()).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return Frame(
        png=buffer.getvalue(),
        seconds=round(_time(chosen, chosen_index, step), 3),
        index=chosen_index,
        width=image.width,
        height=image.height,
    )


def _video_stream(container: InputContainer) -> tuple[VideoStream, float]:
    """The first video stream, set to decode on several threads, and its frame step in seconds."""
    if not container.streams.video:
        raise VideoError("the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate
    return stream, (1 / float(rate) if rate else 0.0)


def _time(frame: VideoFrame, index: int, step: float) -> float:
    when = cast("float | None", frame.time)  # None when the stream has no timestamps
    return when if when is not None else index * step


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


# --- contact sheets -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactSheet:
    """A JPEG grid of frames: its bytes, the times shown (s) and its layout."""

    jpeg: bytes
    times: tuple[float, ...]
    columns: int
    rows: int
    tile: tuple[int, int]


def sheet_path(video: Path) -> Path:
    """Where the contact sheet of a saved video lives: beside it, ``<stem>.sheet.jpg``."""
    return video.with_name(video.stem + SHEET_SUFFIX)


def contact_sheet(
    path: Path, tiles: int = SHEET_TILES, columns: int = SHEET_COLUMNS, max_bytes: int = SHEET_MAX_BYTES
) -> ContactSheet:
    """``tiles`` evenly spaced frames of ``path`` (the first and the last among them) in a grid.

    Every frame is decoded once and kept as a tile-sized thumbnail; the grid is re-encoded at
    lower quality, then smaller, until it fits ``max_bytes``.

    Raises:
        VideoError: the file does not decode or has no frames.
    """
    import av
    from av.error import FFmpegError
    from PIL import Image

    thumbs: list[tuple[float, Image]] = []
    try:
        with av.open(str(path), mode="r") as container:
            stream, step = _video_stream(container)
            size = _tile_size(stream.codec_context.width, stream.codec_context.height)
            for index, frame in enumerate(container.decode(stream)):
                small = frame.reformat(width=size[0], height=size[1], format="rgb24")
                thumbs.append((_time(frame, index, step), cast("Image", small.to_image())))
    except (FFmpegError, ValueError, OSError) as exc:
        raise VideoError(f"the video does not decode ({type(exc).__name__})") from exc
    if not thumbs:
        raise VideoError("the video has no frames")
    count = min(tiles, len(thumbs))
    picks = [round(i * (len(thumbs) - 1) / max(1, count - 1)) for i in range(count)]
    chosen = [thumbs[i] for i in picks]
    rows = -(-count // columns)
    cols = min(columns, count)
    tile = chosen[0][1].size
    sheet = Image.new("RGB", (cols * tile[0] + (cols + 1) * _GAP, rows * tile[1] + (rows + 1) * _GAP))
    for n, (when, image) in enumerate(chosen):
        x = _GAP + (n % cols) * (tile[0] + _GAP)
        y = _GAP + (n // cols) * (tile[1] + _GAP)
        sheet.paste(_labelled(image, f"{when:.1f} s"), (x, y))
    jpeg = _fit_jpeg(sheet, max_bytes)
    return ContactSheet(
        jpeg=jpeg, times=tuple(round(t, 3) for t, _ in chosen), columns=cols, rows=rows, tile=tile
    )


def save_contact_sheet(video: Path) -> Path:
    """Write the contact sheet of ``video`` beside it (atomically) and return its path."""
    sheet = contact_sheet(video)
    target = sheet_path(video)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}~", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(sheet.jpeg)
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return target


def _tile_size(width: int, height: int) -> tuple[int, int]:
    factor = min(_TILE_BOX[0] / max(1, width), _TILE_BOX[1] / max(1, height), 1.0)
    return max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2)


def _labelled(image: Image, text: str) -> Image:
    from PIL import ImageDraw, ImageFont

    picture = image.copy()
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, picture.height // 12))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 3
    box = (0, 0, right - left + 2 * pad, bottom - top + 2 * pad)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((pad - left, pad - top), text, font=font, fill=(255, 255, 255))
    return picture


def _fit_jpeg(sheet: Image, max_bytes: int) -> bytes:
    from PIL.Image import Resampling

    picture = sheet
    while True:
        for quality in _QUALITIES:
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        if picture.width < 64:
            raise VideoError("the contact sheet does not fit its size limit")
        picture = picture.resize((picture.width * 4 // 5, picture.height * 4 // 5), Resampling.LANCZOS)
