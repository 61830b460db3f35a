"""Image inputs read, checked against a model's documented limits and, on request, fixed.

Everything here is blocking (file reads, Pillow decoding) and runs in a worker thread. Pillow is
imported lazily so the server starts fast, and only for formats a provider can take.

A local file is read only when it is a regular file inside an allowed folder (after symlinks are
resolved) with no hidden file or folder below that folder, no larger than the limit, and Pillow
recognises it as an image from its first bytes; a data: URI is size-checked before its base64 is decoded.
"""

# Pillow's stubs mention numpy, which may not be installed: some member types come out unknown.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from server.catalog import MIB, ImageLimits
from server.catalog.params import NOTHING_SENT
from server.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL.Image import Image

# The decoders Pillow may use at all: what the providers document. (A phone camera's multi-picture
# JPEG opens through the JPEG decoder as format "MPO".)
DECODABLE = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
EXTENSION = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
# How much may be read when fix_image may still bring a file under the model's limit.
FIX_CEILING = 50 * MIB
# Far above any model's need; keeps a small file with huge dimensions from being decoded.
MAX_PIXELS = 50_000_000
_JPEG_QUALITIES = (92, 85, 75)
_SHRINK_STEPS = 8


@dataclass(frozen=True, slots=True)
class ReadyImage:
    """Image bytes a provider takes, and what ``fix_image`` changed to get them."""

    data: bytes
    format: str
    width: int
    height: int
    changes: tuple[str, ...] = ()

    @property
    def mime(self) -> str:
        return MIME[self.format]

    @property
    def extension(self) -> str:
        return EXTENSION[self.format]

    def data_uri(self) -> str:
        """The image as a ``data:<mime>;base64,...`` URI."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def refuse(name: str, problem: str) -> InvalidRequest:
    """The refusal of image argument ``name``: what is wrong, then that nothing was sent."""
    return InvalidRequest(f"'{name}' {problem} {NOTHING_SENT}")


def read_budget(limits: ImageLimits, fix: bool) -> int:
    """How many bytes of an input may be read: the model's limit, or more when it may be fixed."""
    return max(limits.max_bytes, FIX_CEILING) if fix else limits.max_bytes


def _mb(size: int) -> str:
    return f"{size / MIB:.1f} MB"


def _too_big(name: str, size: int, limits: ImageLimits, fix: bool) -> InvalidRequest:
    hint = (
        " Pass fix_image=true to let the server re-encode it smaller,"
        if not fix and size <= FIX_CEILING
        else ""
    )
    return refuse(
        name,
        f"is {_mb(size)}; the limit is {_mb(limits.max_bytes)}.{hint} Or give a smaller image.",
    )


# --- data: URIs ---------------------------------------------------------------------------------


def decode_data_uri(name: str, uri: str, limits: ImageLimits, fix: bool) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URI, size-checked before decoding."""
    header, comma, payload = uri.partition(",")
    parts = [p.strip().lower() for p in header.removeprefix("data:").split(";")]
    if not comma or "base64" not in parts[1:]:
        raise refuse(name, "is a data: URI that is not base64; use data:image/<type>;base64,<data>.")
    if parts[0] and not parts[0].startswith("image/"):
        raise refuse(name, f"is a data: URI of type {parts[0][:40]!r}, not an image.")
    payload = "".join(payload.split())
    size = len(payload) * 3 // 4
    if size > read_budget(limits, fix):
        raise _too_big(name, size, limits, fix)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise refuse(name, "is a data: URI whose base64 payload is invalid.") from None


# --- local files --------------------------------------------------------------------------------


def local_path(raw: str) -> Path:
    """The path an image argument names (a ``file://`` URL or a path, ``~`` expanded)."""
    if raw.startswith("file://"):
        raw = unquote(urlsplit(raw).path)
    return Path(raw).expanduser()


def read_local(name: str, raw: str, roots: Sequence[Path], limits: ImageLimits, fix: bool) -> bytes:
    """Read a local image after every check that can be made without reading it.

    The path must be absolute and, with symlinks resolved, inside one of ``roots``; no part of it
    below that folder may be hidden; it must be a regular file within the size budget whose first
    bytes Pillow recognises as an image it may decode.
    """
    from PIL import Image, UnidentifiedImageError

    given = local_path(raw)
    if "\x00" in str(given):
        raise refuse(name, "contains a NUL byte, which no file path can; give the image's real path.")
    if not given.is_absolute():
        raise refuse(name, "is a relative path; give the full path to the image (or an https:// URL).")
    real = Path(os.path.realpath(given))
    resolved_roots = [Path(os.path.realpath(r.expanduser())) for r in roots]
    holders = [r for r in resolved_roots if real.is_relative_to(r)]
    if not holders:
        folders = ", ".join(str(r) for r in resolved_roots) or "none configured"
        raise refuse(
            name,
            f"is outside the folders this server may read ({folders}). Move or copy the image into one "
            "of them (WAN_MCP_ALLOWED_DIRS), or pass an https:// URL or a data: URI.",
        )
    # Hidden means hidden below the folder that allows the file: a folder the user (or the server,
    # for its own files) named may itself sit under a hidden one, like ~/.local/share.
    if given.name.startswith(".") or all(_hidden_below(real, root) for root in holders):
        raise refuse(
            name,
            "is a hidden file or inside a hidden folder, which this server does not read. Copy the image "
            "to a visible folder, or name its folder in WAN_MCP_ALLOWED_DIRS.",
        )
    try:
        before = os.stat(real)
    except FileNotFoundError:
        raise refuse(name, f"names no existing file: {str(given)[:200]!r}.") from None
    except OSError as exc:
        raise refuse(name, f"cannot be read ({exc.strerror}).") from None
    if not stat.S_ISREG(before.st_mode):
        raise refuse(name, "is not a regular file (a folder, device or pipe); give an image file.")
    budget = read_budget(limits, fix)
    if before.st_size > budget:
        raise _too_big(name, before.st_size, limits, fix)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(name, f"cannot be opened ({exc.strerror}).") from None
    with os.fdopen(fd, "rb") as file:
        now = os.fstat(file.fileno())
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise refuse(name, "changed while it was being opened; try again.")
        try:
            with Image.open(file, formats=DECODABLE):
                pass
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise refuse(name, _not_an_image()) from None
        file.seek(0)
        data = _read_at_most(file, budget + 1)
    if len(data) > budget:
        raise _too_big(name, len(data), limits, fix)
    return data


def _hidden_below(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _read_at_most(file: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = file.read(min(left, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _not_an_image() -> str:
    return (
        "is not an image this server can read (JPEG, PNG, WEBP, GIF, BMP or TIFF). Convert it to "
        "JPEG or PNG first."
    )


# --- checking and fixing ------------------------------------------------------------------------


def check_image(name: str, data: bytes, limits: ImageLimits, model: str, fix: bool) -> ReadyImage:
    """Decode ``data`` fully and hold it to ``limits``; fix what can be fixed when ``fix``.

    Raises:
        InvalidRequest: not a decodable image, or outside the limits (and not fixed).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=DECODABLE) as image:
            kind = "JPEG" if image.format == "MPO" else str(image.format)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise refuse(name, f"is {width}x{height} px, more than this server decodes; scale it down.")
            alpha = image.has_transparency_data
            image.load()
            problems = _problems(kind, width, height, alpha, len(data), limits)
            if not problems:
                return ReadyImage(data, kind, width, height)
            if not fix:
                raise refuse(
                    name,
                    f"cannot be sent to {model}: {'; '.join(problems)}. {model} takes "
                    f"{limits.describe()}. Pass fix_image=true to let the server fix this (flatten "
                    "transparency, rescale, re-encode), or give an image within those limits.",
                )
            return _fix(name, image, kind, limits)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise refuse(name, _not_an_image()) from None
    except (OSError, ValueError, SyntaxError):
        raise refuse(name, "could not be decoded: the image is truncated or corrupt.") from None


def _problems(kind: str, width: int, height: int, alpha: bool, size: int, limits: ImageLimits) -> list[str]:
    problems: list[str] = []
    if kind not in limits.formats:
        problems.append(f"it is {kind}, which is not an accepted format")
    if alpha and not limits.alpha:
        problems.append("it has an alpha channel (transparency)")
    low, high = limits.min_side, limits.max_side
    if (low is not None and min(width, height) < low) or (high is not None and max(width, height) > high):
        problems.append(f"it is {width}x{height} px, outside {low or 1}-{high or 'any'} px a side")
    if size > limits.max_bytes:
        problems.append(f"it is {_mb(size)}, over {_mb(limits.max_bytes)}")
    return problems


def _fix(name: str, image: Image, kind: str, limits: ImageLimits) -> ReadyImage:
    from PIL import ImageOps

    changes: list[str] = []
    picture = ImageOps.exif_transpose(image)
    if picture.has_transparency_data and not limits.alpha:
        picture = _flatten(picture)
        changes.append("flattened its transparency onto white")
    width, height = picture.size
    target = _fitted_size(width, height, limits)
    if target is None:
        raise refuse(
            name,
            f"is {width}x{height} px: no scaling fits both sides into {limits.min_side}-{limits.max_side} "
            "px. Crop it to a less extreme aspect ratio.",
        )
    if target != (width, height):
        picture = _resize(picture, target)
        changes.append(f"scaled it from {width}x{height} to {target[0]}x{target[1]} px")
    out_kind = "PNG" if picture.has_transparency_data and "PNG" in limits.formats else "JPEG"
    if out_kind not in limits.formats:
        out_kind = "PNG" if "PNG" in limits.formats else limits.formats[0]
    data, picture = _encode_within(picture, out_kind, limits)
    if data is None:
        raise refuse(name, f"could not be re-encoded under {_mb(limits.max_bytes)}; give a smaller image.")
    if picture.size != target:
        changes.append(f"scaled it down to {picture.size[0]}x{picture.size[1]} px to fit the byte limit")
    changes.append(f"re-encoded it as {out_kind} ({len(data) // 1024} KB)")
    return ReadyImage(data, out_kind, picture.size[0], picture.size[1], tuple(changes))


def _flatten(picture: Image) -> Image:
    from PIL import Image

    rgba = picture.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _fitted_size(width: int, height: int, limits: ImageLimits) -> tuple[int, int] | None:
    """The size closest to the original with both sides in range (aspect kept), or None."""
    low, high = limits.min_side, limits.max_side
    factor = 1.0
    if low is not None and min(width, height) < low:
        factor = low / min(width, height)
    if high is not None and max(width, height) * factor > high:
        factor = high / max(width, height)
    size = (round(width * factor), round(height * factor))
    if low is not None and min(size) < low:
        return None
    if high is not None and max(size) > high:
        return None
    return size


def _resize(picture: Image, size: tuple[int, int]) -> Image:
    from PIL import Image

    return picture.resize(size, Image.Resampling.LANCZOS)


def _encode_within(picture: Image, kind: str, limits: ImageLimits) -> tuple[bytes | None, Image]:
    """Encode as ``kind``, lowering JPEG quality and then the size until it fits the byte limit."""
    low = limits.min_side or 1
    for _ in range(_SHRINK_STEPS):
        for quality in _JPEG_QUALITIES if kind == "JPEG" else (None,):
            data = _encode(picture, kind, quality)
            if len(data) <= limits.max_bytes:
                return data, picture
        width, height = picture.size
        smaller = (round(width * 0.8), round(height * 0.8))
        if min(smaller) < low:
            break
        picture = _resize(picture, smaller)
    return None, picture


def _encode(picture: Image, kind: str, quality: int | None) -> bytes:
    buffer = io.BytesIO()
    if kind == "JPEG":
        source = picture if picture.mode in ("RGB", "L") else _flatten(picture)
        source.save(buffer, "JPEG", quality=quality or 92, optimize=True)
    else:
        keep = picture.mode in ("RGB", "RGBA", "L", "LA", "P")
        (picture if keep else picture.convert("RGB")).save(buffer, kind)
    return buffer.getvalue()
