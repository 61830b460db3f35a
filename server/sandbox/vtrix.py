"""Vtrix generation API for ``wan22_i2v_flash`` (seed 004): submit and task status."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .media import data_uri_bytes
from .routing import base_url, bearer_ok, endpoint, read_json, vx_error
from .schema import Field, Schema, as_object, check
from .state import EmuJob, Size, VideoSpec

if TYPE_CHECKING:
    from .emulator import Emulator

MODEL = "wan22_i2v_flash"
FAILED_CODE = "002014001"
MAX_IMAGE_BYTES = 10 * 1024 * 1024

# The doc says over-long prompts are truncated, so no length is enforced here.
_BODY: Schema = {
    "model": Field("string", required=True, choices=(MODEL,)),
    "input": Field(
        "object",
        required=True,
        fields={
            "prompt": Field("string"),
            "negative_prompt": Field("string"),
            "img_url": Field("string", required=True),
        },
    ),
    "parameters": Field(
        "object",
        fields={
            "resolution": Field("string", choices=("480P", "720P")),
            "duration": Field("integer", choices=(5,)),
            "prompt_extend": Field("boolean"),
            "watermark": Field("boolean"),
            "seed": Field("integer", minimum=0, maximum=2_147_483_647),
        },
    ),
}

# Output sizes per tier; the one closest to the input's aspect ratio is used.
_SIZES: dict[str, tuple[Size, ...]] = {
    "480P": ((832, 480), (480, 832), (624, 624)),
    "720P": ((1280, 720), (720, 1280), (960, 960), (1088, 832), (832, 1088)),
}
_COST = {"480P": 0.07, "720P": 0.14}


def routes(emu: Emulator) -> list[Route]:
    """The Vtrix routes, bound to ``emu``."""

    def unauthorized(request: Request) -> Response | None:
        if bearer_ok(request, emu.vtrix_key):
            return None
        return vx_error(401, "API key missing or invalid", "unauthorized")

    def answer(task: dict[str, object]) -> Response:
        if emu.vtrix_envelope:
            return JSONResponse({"data": task, "status": {"code": 200, "message": "success"}})
        return JSONResponse(task)

    async def submit(request: Request) -> Response:
        if refused := unauthorized(request):
            return refused
        if not emu.vtrix_balance_ok:
            return vx_error(403, "insufficient balance", "insufficient_balance")
        ok, body = await read_json(request)
        problem = check(body, _BODY) if ok else "request body is not valid JSON"
        request_body = as_object(body)
        if problem or request_body is None:
            return vx_error(400, problem or "body must be a JSON object")
        inputs = as_object(request_body["input"]) or {}
        parameters = as_object(request_body.get("parameters")) or {}
        image = str(inputs["img_url"])
        problem = check_image_ref(image)
        if problem:
            return vx_error(400, problem)
        tier = str(parameters.get("resolution", "720P"))
        video = VideoSpec(image, 5, _SIZES[tier])
        job = emu.create_job("vtrix", MODEL, request_body, video, _COST[tier])
        return answer({"id": job.id, "created_at": _ms(job), "status": emu.vtrix_statuses[0], "model": MODEL})

    async def task(request: Request) -> Response:
        if refused := unauthorized(request):
            return refused
        job = emu.jobs.get(request.path_params["id"])
        if job is None or job.provider != "vtrix":
            return vx_error(404, "task not found")
        emu.poll(job)
        return answer(task_object(emu, job, base_url(request)))

    return [
        Route("/model/v1/generation", endpoint(emu, "vx.submit", submit), methods=["POST"]),
        Route("/model/v1/generation/task/{id}", endpoint(emu, "vx.task", task), methods=["GET"]),
    ]


def task_object(emu: Emulator, job: EmuJob, base: str) -> dict[str, object]:
    """A job as Vtrix describes a task."""
    running, success = emu.vtrix_statuses
    task: dict[str, object] = {"id": job.id, "created_at": _ms(job), "model": job.model}
    if job.state == "completed":
        url = f"{base}/sandbox/files/{job.id}.mp4"
        task["status"] = success
        task["output"] = [{"content": [{"type": "video", "url": url, "duration": 5}], "jobId": job.id}]
        task["usage"] = {"cost": f"{job.cost:.2f}", "discount": 0}
    elif job.state == "failed":
        task["status"] = "failed"
        task["error"] = {"code": FAILED_CODE, "message": job.error}
    else:
        task["status"] = running
        task["progress"] = emu.progress(job)
    task["metadata"] = {}
    return task


def check_image_ref(ref: str) -> str | None:
    """What is wrong with ``input.img_url`` (an http(s) URL or an image data: URI), if anything."""
    if ref.startswith("data:"):
        return _check_data_uri(ref)
    parts = urlsplit(ref)
    if parts.scheme in ("http", "https") and parts.netloc:
        return None
    return "'input.img_url' must be an http(s) URL or a data:{MIME_type};base64,{data} URI"


def _check_data_uri(uri: str) -> str | None:
    from PIL import Image

    if not uri.startswith("data:image/"):
        return "'input.img_url' data URI must have an image MIME type"
    data = data_uri_bytes(uri)
    if data is None:
        return "'input.img_url' is not valid base64 data URI"
    if len(data) > MAX_IMAGE_BYTES:
        return "'input.img_url' image is larger than 10MB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, mode, (width, height) = image.format, image.mode, image.size
            transparent = "transparency" in image.info
    except (OSError, ValueError, Image.DecompressionBombError):
        return "'input.img_url' could not be decoded as an image"
    if kind not in ("JPEG", "PNG", "BMP", "WEBP"):
        return f"'input.img_url' format {kind} is not supported (JPEG, PNG, BMP, WEBP)"
    if kind == "PNG" and (mode in ("RGBA", "LA", "PA") or transparent):
        return "'input.img_url' PNG must not have an alpha channel"
    if not (360 <= width <= 2000 and 360 <= height <= 2000):
        return f"'input.img_url' is {width}x{height}; width and height must be 360-2000 px"
    return None


def _ms(job: EmuJob) -> int:
    return int(job.created_at.timestamp() * 1000)
