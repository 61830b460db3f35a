"""WaveSpeed AI API v3: the four Wan models, results, price, balance and history.

The parameter tables are the seeds' (000-003); the emulator keeps its own copy on purpose, so
it checks the client against the vendor's documents rather than against itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .routing import base_url, bearer_ok, endpoint, read_json, ws_error
from .schema import Field, Schema, as_object, check
from .state import EmuJob, JobState, Size, VideoSpec

if TYPE_CHECKING:
    from .emulator import Emulator

Inputs = Mapping[str, object]

_SEED = Field("integer", minimum=-1, maximum=2_147_483_647)
_LORAS = Field(
    "array",
    max_items=3,
    fields={
        "path": Field("string", required=True),
        "scale": Field("number", required=True, minimum=0, maximum=4),
    },
)
_COMMON: Schema = {
    "image": Field("string", required=True),
    "prompt": Field("string", required=True),
    "negative_prompt": Field("string"),
    "seed": _SEED,
    "enable_base64_output": Field("boolean"),
    "enable_sync_mode": Field("boolean"),
}
_WAN22: Schema = {**_COMMON, "last_image": Field("string"), "duration": Field("integer", choices=(5, 8))}

_STATUS: dict[JobState, str] = {
    "queued": "created",
    "running": "processing",
    "completed": "completed",
    "failed": "failed",
}
_UNAUTHORIZED = "Unauthorized: invalid authentication"


@dataclass(frozen=True)
class WsModel:
    """One WaveSpeed model as its seed documents it."""

    id: str
    schema: Schema
    price: Callable[[Inputs], float]
    sizes: Callable[[Inputs], tuple[Size, ...]]


def _duration(inputs: Inputs) -> int:
    value = inputs.get("duration", 5)
    return value if isinstance(value, int) else 5


def _wan22_i2v_price(inputs: Inputs) -> float:
    per_5s = 0.30 if inputs.get("resolution") == "720p" else 0.15
    return per_5s * _duration(inputs) / 5


MODELS: dict[str, WsModel] = {
    model.id: model
    for model in (
        WsModel(
            "wavespeed-ai/wan-2.2/i2v-480p-ultra-fast",
            _WAN22,
            lambda inputs: 0.01 * max(5, _duration(inputs)),
            lambda _: ((832, 480),),
        ),
        WsModel(
            "wavespeed-ai/wan-2.2/i2v-480p-lora-ultra-fast",
            {**_WAN22, "loras": _LORAS, "high_noise_loras": _LORAS, "low_noise_loras": _LORAS},
            lambda inputs: 0.02 * _duration(inputs),
            lambda _: ((832, 480),),
        ),
        WsModel(
            "wavespeed-ai/wan-2.2/image-to-video",
            {**_WAN22, "resolution": Field("string", choices=("480p", "720p"))},
            _wan22_i2v_price,
            lambda inputs: ((1280, 720),) if inputs.get("resolution") == "720p" else ((832, 480),),
        ),
        WsModel(
            "wavespeed-ai/wan-2.1/i2v-480p",
            {
                **_COMMON,
                "size": Field("string", choices=("832*480", "480*832")),
                "num_inference_steps": Field("integer", minimum=1, maximum=40),
                "duration": Field("integer", minimum=5, maximum=10),
                "guidance_scale": Field("number", minimum=0, maximum=20),
                "flow_shift": Field("number", minimum=1, maximum=10),
                "enable_safety_checker": Field("boolean"),
            },
            # Not in the seed: the emulator's own figure, $0.20 per 5 s.
            lambda inputs: 0.20 * _duration(inputs) / 5,
            lambda inputs: ((480, 832),) if inputs.get("size") == "480*832" else ((832, 480),),
        ),
    )
}

_PRICE_BODY: Schema = {"model_id": Field("string", required=True), "inputs": Field("object")}
_HISTORY_BODY: Schema = {
    "page": Field("integer", minimum=1),
    "page_size": Field("integer", minimum=1, maximum=100),
    "model": Field("string"),
    "status": Field("string", choices=("completed", "failed", "processing")),
    "created_after": Field("string"),
    "created_before": Field("string"),
}


def routes(emu: Emulator) -> list[Route]:
    """The WaveSpeed routes, bound to ``emu``."""

    def authorized(request: Request) -> bool:
        return bearer_ok(request, emu.wavespeed_key)

    async def submit(request: Request) -> Response:
        if not authorized(request):
            return ws_error(401, _UNAUTHORIZED)
        model = MODELS.get(request.path_params["model"])
        if model is None:
            return ws_error(404, f"model '{request.path_params['model']}' not found")
        ok, body = await read_json(request)
        problem = check(body, model.schema) if ok else "request body is not valid JSON"
        inputs = as_object(body)
        if problem or inputs is None:
            return ws_error(400, problem or "body must be a JSON object")
        video = VideoSpec(str(inputs["image"]), _duration(inputs), model.sizes(inputs))
        job = emu.create_job(
            "wavespeed",
            model.id,
            inputs,
            video,
            round(model.price(inputs), 4),
            webhook=request.query_params.get("webhook"),
            base=base_url(request),
        )
        return _ok(prediction(job, base_url(request)))

    async def result(request: Request) -> Response:
        if not authorized(request):
            return ws_error(401, _UNAUTHORIZED)
        job = emu.jobs.get(request.path_params["id"])
        if job is None or job.provider != "wavespeed":
            return ws_error(404, "prediction not found")
        emu.poll(job)
        return _ok(prediction(job, base_url(request)))

    async def price(request: Request) -> Response:
        if not authorized(request):
            return ws_error(401, _UNAUTHORIZED)
        ok, body = await read_json(request)
        problem = check(body, _PRICE_BODY) if ok else "request body is not valid JSON"
        query = as_object(body)
        if problem or query is None:
            return ws_error(400, problem or "body must be a JSON object")
        model = MODELS.get(str(query["model_id"]))
        if model is None:
            return ws_error(404, f"model '{query['model_id']}' not found")
        inputs = as_object(query.get("inputs")) or {}
        problem = check(inputs, model.schema, "inputs.", partial=True)
        if problem:
            return ws_error(400, problem)
        amount = round(model.price(inputs), 4)
        data = {"model_id": model.id, "price": amount, "discounted_price": amount, "currency": "USD"}
        return _ok(data)

    async def webhook_secret(request: Request) -> Response:
        if not authorized(request):
            return ws_error(401, _UNAUTHORIZED)
        return _ok({"secret": emu.webhook_secret})

    async def balance(request: Request) -> Response:
        if not authorized(request):
            return ws_error(401, _UNAUTHORIZED)
        return _ok({"balance": emu.balance})

    async def history(request: Request) -> Response:
        if not authorized(request):
            return ws_error(401, _UNAUTHORIZED)
        ok, body = await read_json(request)
        problem = check(body, _HISTORY_BODY) if ok else "request body is not valid JSON"
        query = as_object(body)
        if problem or query is None:
            return ws_error(400, problem or "body must be a JSON object")
        try:
            after, before = _when(query.get("created_after")), _when(query.get("created_before"))
        except ValueError:
            return ws_error(400, "created_after and created_before must be ISO 8601 timestamps")
        jobs = [
            job
            for job in reversed(emu.submissions("wavespeed"))
            if query.get("model") in (None, job.model)
            and query.get("status") in (None, _STATUS[job.state] if job.terminal else "processing")
            and (after is None or job.created_at >= after)
            and (before is None or job.created_at <= before)
        ]
        page, size = _int(query.get("page"), 1), _int(query.get("page_size"), 20)
        base = base_url(request)
        items = [prediction(job, base) for job in jobs[(page - 1) * size : page * size]]
        return _ok({"page": page, "total": len(jobs), "items": items})

    return [
        Route("/api/v3/predictions/{id}/result", endpoint(emu, "ws.result", result), methods=["GET"]),
        Route("/api/v3/predictions/{id}", endpoint(emu, "ws.result", result), methods=["GET"]),
        Route("/api/v3/predictions", endpoint(emu, "ws.history", history), methods=["POST"]),
        Route("/api/v3/model/price", endpoint(emu, "ws.price", price), methods=["POST"]),
        Route("/api/v3/balance", endpoint(emu, "ws.balance", balance), methods=["GET"]),
        Route("/api/v3/webhook/secret", endpoint(emu, "ws.webhook_secret", webhook_secret), methods=["GET"]),
        # Matches any POST under /api/v3, so every other one (uploads too) must be mounted first.
        Route("/api/v3/{model:path}", endpoint(emu, "ws.submit", submit), methods=["POST"]),
    ]


def prediction(job: EmuJob, base: str) -> dict[str, object]:
    """A job as WaveSpeed describes a prediction (the ``data`` of a result)."""
    done = job.state == "completed"
    return {
        "id": job.id,
        "model": job.model,
        "outputs": [f"{base}/sandbox/files/{job.id}.mp4"] if done else [],
        "urls": {"get": f"{base}/api/v3/predictions/{job.id}/result"},
        "has_nsfw_contents": [False] if done else [],
        "status": _STATUS[job.state],
        "created_at": job.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "error": job.error,
        "timings": {"inference": job.elapsed_ms() if job.terminal else 0},
    }


def _ok(data: object) -> Response:
    return JSONResponse({"code": 200, "message": "success", "data": data})


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) else default


def _when(value: object) -> datetime | None:
    """Parse an optional ISO 8601 filter (UTC unless it says otherwise); ValueError if unreadable."""
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
