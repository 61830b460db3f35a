"""Render a job's MP4: a slow zoom over its input image (PyAV and Pillow, imported lazily)."""

# PyAV's stubs leave Packet's type parameter and some signatures open, and Pillow's mention
# numpy, which may not be installed: member types come out "partially unknown" for no fault here.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

import io
import math
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING, cast

from .state import Size, VideoSpec

if TYPE_CHECKING:
    from PIL.Image import Image

# Tried in order; the first that the installed PyAV can encode wins.
_CODECS = ("libx264", "h264", "libopenh264", "mpeg4")
_ZOOM = 0.12


def render_mp4(image: bytes | None, spec: VideoSpec, *, fps: int, scale: float, seed: int) -> bytes:
    """Encode ``spec.duration`` seconds at ``fps`` of a gentle zoom into ``image``.

    ``image`` None (or undecodable) gives a synthetic gradient still. The frame size is the
    spec size closest to the image's aspect ratio, times ``scale``, rounded to even numbers.
    """
    import av
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

    source = _decode(image)
    width, height = _scaled(_closest(spec.sizes, source.size if source else None), scale)
    still = _cover(source, width, height) if source else _gradient(width, height, seed)
    frames = spec.duration * fps
    codec = _codec()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=_options(codec))
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            still_frame = _zoomed(still, index / max(1, frames - 1), seed)
            frame = cast("VideoFrame", VideoFrame.from_image(still_frame))
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@cache
def _codec() -> str:
    """The first codec in ``_CODECS`` that really encodes a frame into MP4 here."""
    import av
    from av.error import FFmpegError

    for name in _CODECS:
        try:
            with av.open(io.BytesIO(), mode="w", format="mp4") as container:
                stream = container.add_stream(name, rate=1)
                stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
                container.mux(stream.encode(av.VideoFrame(16, 16, "yuv420p")))
                container.mux(stream.encode(None))
        except (FFmpegError, ValueError):
            continue
        return name
    raise RuntimeError(f"PyAV cannot encode MP4 video with any of {', '.join(_CODECS)}")


def _options(codec: str) -> dict[str, str]:
    if codec in ("libx264", "h264"):
        return {"preset": "ultrafast", "crf": "26"}
    return {}


def _decode(image: bytes | None) -> Image | None:
    from PIL import Image, ImageOps

    if image is None:
        return None
    try:
        with Image.open(io.BytesIO(image)) as opened:
            return ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _closest(sizes: tuple[Size, ...], image: Size | None) -> Size:
    if image is None:
        return sizes[0]
    aspect = math.log(image[0] / image[1])
    return min(sizes, key=lambda size: abs(math.log(size[0] / size[1]) - aspect))


def _scaled(size: Size, scale: float) -> Size:
    return (max(2, round(size[0] * scale / 2) * 2), max(2, round(size[1] * scale / 2) * 2))


def _cover(image: Image, width: int, height: int) -> Image:
    from PIL import ImageOps

    return ImageOps.fit(image, (width, height))


def _gradient(width: int, height: int, seed: int) -> Image:
    from PIL import Image, ImageDraw

    ramp = Image.linear_gradient("L")
    red = ramp.rotate(90).resize((width, height))
    green = ramp.resize((width, height))
    blue = Image.new("L", (width, height), 64 + seed % 128)
    still = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(still)
    for index in range(5):
        x = (seed >> (index * 3)) % max(1, width)
        y = (seed >> (index * 5)) % max(1, height)
        radius = max(2, min(width, height) // (6 + index))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255 - 40 * index, 96))
    return still


def _zoomed(still: Image, t: float, seed: int) -> Image:
    """The frame at time ``t`` (0..1): a crop shrinking towards a seed-chosen point."""
    from PIL import Image

    width, height = still.size
    zoom = 1 + _ZOOM * t
    crop_w, crop_h = width / zoom, height / zoom
    focus_x = 0.4 + 0.2 * ((seed % 7) / 6)
    focus_y = 0.4 + 0.2 * ((seed % 5) / 4)
    left = (width - crop_w) * focus_x
    top = (height - crop_h) * focus_y
    box = (left, top, left + crop_w, top + crop_h)
    return still.resize((width, height), Image.Resampling.BILINEAR, box=box)
