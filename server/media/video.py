"""A downloaded video decoded end to end with PyAV, and a small poster frame from a third of the way in.

Blocking (decoding); runs in a worker thread. PyAV and Pillow are imported lazily.
"""

# PyAV's stubs leave some members' types open ("partially unknown") for no fault here.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from PIL.Image import Image

POSTER_WIDTH = 320
POSTER_QUALITY = 78


class VideoError(Exception):
    """The file is not a video that decodes."""


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What decoding a video found, and its poster frame as JPEG bytes."""

    width: int
    height: int
    frames: int
    duration_seconds: float
    fps: float | None
    codec: str
    poster_jpeg: bytes


def video_record(path: Path, facts: VideoFacts) -> dict[str, object]:
    """A saved video's facts as a sidecar records them."""
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "width": facts.width,
        "height": facts.height,
        "frames": facts.frames,
        "duration_seconds": facts.duration_seconds,
        "fps": facts.fps,
        "codec": facts.codec,
    }


def inspect_video(path: Path, poster_width: int = POSTER_WIDTH) -> VideoFacts:
    """Decode every frame of ``path``'s first video stream; keep the frame at about 1/3 as a poster.

    Raises:
        VideoError: no video stream, no frame, or a decoding error.
    """
    import av
    from av.error import FFmpegError
    from av.video.frame import VideoFrame

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoError("the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _duration(stream.duration, stream.time_base, container.duration)
            at = duration / 3 if duration else 0.0
            frames = 0
            first: VideoFrame | None = None
            chosen: VideoFrame | None = None
            last_time = 0.0
            for frame in container.decode(stream):
                frames += 1
                when = cast("float | None", frame.time)  # None when the stream has no timestamps
                if when is not None:
                    last_time = when
                if first is None:
                    first = frame
                if chosen is None and when is not None and when >= at:
                    chosen = frame
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate
    except (FFmpegError, ValueError, OSError) as exc:
        raise VideoError(f"the file does not decode as video ({type(exc).__name__})") from exc
    poster = chosen or first
    if poster is None or frames == 0:
        raise VideoError("the video has no frames")
    fps = float(rate) if rate else None
    if not duration:
        duration = last_time + (1 / fps if fps else 0.0)
    return VideoFacts(
        width=width,
        height=height,
        frames=frames,
        duration_seconds=round(duration, 3),
        fps=round(fps, 3) if fps else None,
        codec=codec,
        poster_jpeg=poster_jpeg(cast("Image", poster.to_image()), poster_width),
    )


def _duration(
    stream_duration: int | None, time_base: Fraction | None, container_duration: int | None
) -> float:
    import av

    if stream_duration and time_base:
        return float(stream_duration * time_base)
    if container_duration:
        return container_duration / av.time_base
    return 0.0


def poster_jpeg(image: Image, width: int = POSTER_WIDTH) -> bytes:
    """A JPEG at most ``width`` px wide of a Pillow image."""
    from PIL.Image import Resampling

    picture = image.convert("RGB")
    if picture.width > width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=POSTER_QUALITY, optimize=True)
    return buffer.getvalue()
