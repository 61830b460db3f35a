"""Stitching: completed jobs' saved MP4s joined, in order, into one MP4 in the output folder.

Clips of the same codec, size, rate and encoder settings, joined without a crossfade, are copied
packet by packet (no quality lost, no time spent); anything else is decoded and re-encoded at the
first clip's size (others fitted inside it, letterboxed) and rate, with an optional crossfade
that blends the end of each clip into the start of the next. The result is decoded end to end
before it gets its final name. Beside ``<stitch_id>.mp4`` go the poster, the contact sheet and a
sidecar naming the parts. A stitch is local work: no provider is called and nothing is charged.

The stitch id is derived from the parts and the crossfade, so asking again returns the file
already made instead of making it twice. PyAV and Pillow only (no ffmpeg binary), imported lazily.
"""

# PyAV's stubs leave some members' types open, and Pillow's mention numpy, which may not be
# installed: member types come out "partially unknown" for no fault here.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio.to_thread

from server.catalog.params import NOTHING_SENT
from server.errors import InvalidRequest, JobNotFound
from server.jobs.store import Job, JobStore
from server.media.archive import write_atomic
from server.media.frames import save_contact_sheet, saved_video
from server.media.video import VideoError, VideoFacts, inspect_video, video_record
from server.settings import MAX_CROSSFADE_SECONDS, MAX_PARTS

if TYPE_CHECKING:
    from av.video.frame import VideoFrame
    from PIL.Image import Image

log = logging.getLogger("wan_video_mcp.media")

STITCH_ID = re.compile(r"^stitch-[0-9a-f]{12}$")
_CODECS = ("libx264", "h264", "mpeg4")
Mode = Literal["copied", "re-encoded"]


@dataclass(frozen=True, slots=True)
class Stitched:
    """A stitched video on disk and what its sidecar says."""

    stitch_id: str
    video: Path
    poster: Path
    sidecar: Path
    record: dict[str, Any]
    reused: bool = False


@dataclass(frozen=True, slots=True)
class _Probe:
    path: Path
    width: int
    height: int
    rate: Fraction
    codec: str
    extradata: bytes
    time_base: Fraction


def stitch_id_for(job_ids: Sequence[str], crossfade: float) -> str:
    """The id of the stitch of these parts with this crossfade (the same request, the same id)."""
    blob = json.dumps({"parts": list(job_ids), "crossfade": round(crossfade, 3)}, separators=(",", ":"))
    return "stitch-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def check_request(job_ids: object, crossfade: object) -> tuple[list[str], float]:
    """``job_ids`` and ``crossfade_seconds`` checked.

    Raises:
        InvalidRequest: naming what is wrong.
    """
    if not isinstance(job_ids, list) or not all(isinstance(j, str) and j for j in cast(list[Any], job_ids)):
        raise InvalidRequest("'job_ids' must be a list of job ids (strings), in the order to join them.")
    ids = cast(list[str], job_ids)
    if not 2 <= len(ids) <= MAX_PARTS:
        raise InvalidRequest(f"'job_ids' must name 2 to {MAX_PARTS} jobs; got {len(ids)}.")
    if isinstance(crossfade, bool) or not isinstance(crossfade, int | float):
        raise InvalidRequest(f"'crossfade_seconds' must be a number of seconds; got {crossfade!r}.")
    if not 0 <= crossfade <= MAX_CROSSFADE_SECONDS:
        raise InvalidRequest(
            f"'crossfade_seconds' must be from 0 to {MAX_CROSSFADE_SECONDS:g}; got {crossfade!r}."
        )
    return ids, float(crossfade)


def find_stitch(folder: Path, stitch_id: str) -> Path | None:
    """The MP4 of a stitch made earlier, if it is still in ``folder``."""
    if not STITCH_ID.match(stitch_id):
        return None
    video = folder / f"{stitch_id}.mp4"
    return video if video.is_file() and video.with_suffix(".json").is_file() else None


async def stitch_jobs(store: JobStore, folder: Path, job_ids: object, crossfade: object) -> Stitched:
    """Join the saved videos of completed jobs, in order, into one MP4 in ``folder``.

    Every part is checked before any work starts.

    Raises:
        InvalidRequest: bad arguments, or a part that is unknown, unfinished or not saved.
        VideoError: a part does not decode, or the result does not.
    """
    ids, fade = check_request(job_ids, crossfade)
    paths: list[Path] = []
    for job_id in ids:
        try:
            paths.append(await saved_video(store, job_id))
        except JobNotFound:
            raise InvalidRequest(
                f"Cannot stitch: this server knows no job '{job_id}'; use job ids from generate calls "
                "(list_jobs shows them). Nothing was stitched."
            ) from None
        except InvalidRequest as exc:
            raise InvalidRequest(f"Cannot stitch: {exc} Nothing was stitched.") from None
    stitch_id = stitch_id_for(ids, fade)
    parts = [await store.get(job_id) for job_id in ids]
    return await anyio.to_thread.run_sync(_stitch_in_folder, stitch_id, parts, paths, folder, fade)


def _stitch_in_folder(
    stitch_id: str, parts: list[Job], paths: list[Path], folder: Path, fade: float
) -> Stitched:
    folder = folder.expanduser()
    existing = find_stitch(folder, stitch_id)
    if existing is not None:
        record = json.loads(existing.with_suffix(".json").read_text("utf-8"))
        return Stitched(
            stitch_id, existing, existing.with_suffix(".jpg"), existing.with_suffix(".json"), record, True
        )
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"{stitch_id}.mp4"
    mode, facts, probes = _stitch_verified(paths, video, fade)
    poster = video.with_suffix(".jpg")
    sidecar = video.with_suffix(".json")
    record: dict[str, Any] = {
        "stitch_id": stitch_id,
        "parts": [
            {
                "job_id": job.id,
                "model": job.model,
                "file": Path(probe.path).name,
                "size": f"{probe.width}x{probe.height}",
                "fps": round(float(probe.rate), 3),
                "prompt": job.params.get("prompt"),
                "seed": job.params.get("seed"),
            }
            for job, probe in zip(parts, probes, strict=True)
        ],
        "crossfade_seconds": fade,
        "mode": mode,
        "cost_usd": 0.0,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "video": video_record(video, facts),
        "poster": poster.name,
    }
    write_atomic(poster, facts.poster_jpeg)
    with contextlib.suppress(VideoError, OSError):
        record["contact_sheet"] = save_contact_sheet(video).name
    write_atomic(sidecar, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())
    log.info("stitched %d clips (%s) into %s", len(paths), mode, video)
    return Stitched(stitch_id, video, poster, sidecar, record)


def _stitch_verified(paths: list[Path], out: Path, fade: float) -> tuple[Mode, VideoFacts, list[_Probe]]:
    """Stitch into a temporary file, decode it end to end, then give it its final name."""
    probes = [_probe(path) for path in paths]
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.{os.getpid()}~", suffix=".part", dir=out.parent)
    os.close(fd)
    part = Path(name)
    try:
        expected = None
        mode: Mode = "re-encoded"
        if fade == 0 and _copyable(probes):
            try:
                expected = _copy(probes, part)
                mode = "copied"
            except (VideoError, ValueError, OSError) as exc:
                log.info("copying the clips failed (%s); re-encoding them instead", exc)
        if mode == "re-encoded":
            expected = _reencode(probes, part, fade)
        facts = inspect_video(part)
        if facts.frames != expected and mode == "copied":
            log.info("the copied stitch has %s frames, not %s; re-encoding", facts.frames, expected)
            mode = "re-encoded"
            expected = _reencode(probes, part, fade)
            facts = inspect_video(part)
        os.replace(part, out)
        return mode, facts, probes
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def _probe(path: Path) -> _Probe:
    import av
    from av.error import FFmpegError

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            context = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or Fraction(16)
            return _Probe(
                path=path,
                width=context.width,
                height=context.height,
                rate=Fraction(rate),
                codec=context.name,
                extradata=bytes(context.extradata or b""),
                time_base=Fraction(stream.time_base or Fraction(1, 16000)),
            )
    except (FFmpegError, ValueError, OSError) as exc:
        raise VideoError(f"{path.name} does not decode ({type(exc).__name__})") from exc


def _copyable(probes: list[_Probe]) -> bool:
    first = probes[0]
    return all(
        (p.width, p.height, p.rate, p.codec, p.extradata, p.time_base)
        == (first.width, first.height, first.rate, first.codec, first.extradata, first.time_base)
        for p in probes
    )


def _copy(probes: list[_Probe], out: Path) -> int:
    """Remux every clip's packets one after another; returns the number of frames written."""
    import av

    frames = 0
    with av.open(str(out), mode="w", format="mp4") as output:
        with av.open(str(probes[0].path), mode="r") as template:
            target = output.add_stream_from_template(template.streams.video[0])
        offset = 0
        last_dts: int | None = None
        for probe in probes:
            with av.open(str(probe.path), mode="r") as source:
                stream = source.streams.video[0]
                packets = [p for p in source.demux(stream) if p.dts is not None and p.pts is not None]
                if not packets:
                    raise VideoError(f"{probe.path.name} has no packets")
                first_dts = min(cast(int, p.dts) for p in packets)
                if last_dts is not None and offset + first_dts <= last_dts:
                    offset = last_dts + 1 - first_dts
                end = 0
                for packet in packets:
                    pts, dts = cast(int, packet.pts), cast(int, packet.dts)
                    end = max(end, pts + (packet.duration or 0))
                    packet.pts, packet.dts = pts + offset, dts + offset
                    last_dts = dts + offset
                    packet.stream = target
                    output.mux(packet)
                    frames += 1
                offset += end
    return frames


def _reencode(probes: list[_Probe], out: Path, fade: float) -> int:
    """Decode, fit, crossfade and encode every clip; returns the number of frames written."""
    import av
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream
    from PIL import Image

    first = probes[0]
    size = (first.width // 2 * 2, first.height // 2 * 2)
    rate = first.rate
    overlap = round(fade * float(rate))
    codec = _codec()
    written = 0
    with av.open(str(out), mode="w", format="mp4") as output:
        stream = output.add_stream(codec, rate=rate, options=_options(codec))
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"

        def emit(image: Image) -> None:
            nonlocal written
            frame = cast("VideoFrame", VideoFrame.from_image(image)).reformat(format="yuv420p")
            frame.pts, frame.time_base = written, Fraction(1) / rate
            output.mux(stream.encode(frame))
            written += 1

        tail: list[Image] = []
        for number, probe in enumerate(probes):
            last = number == len(probes) - 1
            held: deque[Image] = deque()
            count = 0
            for image in _fitted_frames(probe, size, rate):
                if count < len(tail):
                    # The previous clip's last frames fade out as this clip's first ones fade in.
                    emit(Image.blend(tail[count], image, (count + 1) / (len(tail) + 1)))
                else:
                    held.append(image)
                    if len(held) > (0 if last else overlap):
                        emit(held.popleft())
                count += 1
            if count <= len(tail) + (0 if last else overlap):
                raise InvalidRequest(
                    f"'crossfade_seconds' {fade:g} is too long for clip {number + 1} ({count} frames); "
                    "use less than half the shortest clip."
                )
            tail = list(held)
        output.mux(stream.encode(None))
    return written


def _fitted_frames(probe: _Probe, size: tuple[int, int], rate: Fraction) -> Iterator[Image]:
    """The clip's frames at ``size`` (letterboxed when the aspect differs) and at ``rate``."""
    import av
    from PIL import ImageOps

    step = 1 / float(rate)
    same_rate = probe.rate == rate
    with av.open(str(probe.path), mode="r") as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        emitted = 0
        end = 0.0
        previous: Image | None = None
        for index, frame in enumerate(source.decode(stream)):
            image = cast("Image", frame.to_image()).convert("RGB")
            if image.size != size:
                image = ImageOps.pad(image, size, color=(0, 0, 0))
            if same_rate:
                yield image
                continue
            stamp = cast("float | None", frame.time)
            when = stamp if stamp is not None else index / float(probe.rate)
            end = when + 1 / float(probe.rate)
            # A different rate: each output slot shows the frame on screen at its time.
            while previous is not None and emitted * step < when - 1e-6:
                yield previous
                emitted += 1
            previous = image
        if previous is not None:
            while emitted * step < end - 1e-6:
                yield previous
                emitted += 1


def _codec() -> str:
    from av.codec import Codec
    from av.error import FFmpegError

    for name in _CODECS:
        try:
            Codec(name, "w")
        except (FFmpegError, ValueError):
            continue
        return name
    raise VideoError(f"PyAV cannot encode MP4 video with any of {', '.join(_CODECS)}")


def _options(codec: str) -> dict[str, str]:
    if codec in ("libx264", "h264"):
        return {"preset": "veryfast", "crf": "20"}
    return {}


__all__ = ["NOTHING_SENT", "Stitched", "find_stitch", "stitch_id_for", "stitch_jobs"]
