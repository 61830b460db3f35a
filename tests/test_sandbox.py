"""The provider emulator (server/sandbox) against the vendors' documented contracts."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import av
import httpx
import pytest
from PIL import Image

from server.sandbox import Emulator, Fault, serve_emulator

WS_KEY = "ws-test-key"
VX_KEY = "vx-test-key"
WS = {"Authorization": f"Bearer {WS_KEY}"}
VX = {"Authorization": f"Bearer {VX_KEY}"}
ULTRA = "/api/v3/wavespeed-ai/wan-2.2/i2v-480p-ultra-fast"
LORA = "/api/v3/wavespeed-ai/wan-2.2/i2v-480p-lora-ultra-fast"
I2V = "/api/v3/wavespeed-ai/wan-2.2/image-to-video"
WAN21 = "/api/v3/wavespeed-ai/wan-2.1/i2v-480p"
VX_SUBMIT = "/model/v1/generation"
IMAGE_URL = "https://example.com/cat.png"


@pytest.fixture
def emu() -> Emulator:
    emulator = Emulator(wavespeed_key=WS_KEY, vtrix_key=VX_KEY)
    emulator.render_scale = 0.25
    return emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://testserver") as http:
        yield http


# --- helpers -------------------------------------------------------------------------------


def image_bytes(
    width: int = 640, height: int = 360, fmt: str = "PNG", mode: str = "RGB", color: Any = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def vx_body(img_url: str = IMAGE_URL, **parameters: object) -> dict[str, object]:
    body: dict[str, object] = {"model": "wan22_i2v_flash", "input": {"prompt": "a cat", "img_url": img_url}}
    if parameters:
        body["parameters"] = parameters
    return body


@dataclass
class Video:
    frames: int
    width: int
    height: int
    seconds: float
    center: tuple[int, int, int]


def decode(data: bytes) -> Video:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert container.duration is not None
        first = frames[0].to_image()
        center = first.getpixel((first.width // 2, first.height // 2))
        assert isinstance(center, tuple)
        return Video(len(frames), stream.width, stream.height, container.duration / 1_000_000, center[:3])


async def ws_job(client: httpx.AsyncClient, path: str = ULTRA, **inputs: object) -> str:
    body = {"image": IMAGE_URL, "prompt": "a cat walks", **inputs}
    response = await client.post(path, json=body, headers=WS)
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


async def ws_poll(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v3/predictions/{job_id}/result", headers=WS)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def vx_job(client: httpx.AsyncClient, body: dict[str, object] | None = None) -> str:
    response = await client.post(VX_SUBMIT, json=body or vx_body(), headers=VX)
    assert response.status_code == 200, response.text
    payload = response.json()
    return (payload.get("data") or payload)["id"]


async def vx_poll(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/model/v1/generation/task/{job_id}", headers=VX)
    assert response.status_code == 200, response.text
    return response.json()


# --- auth ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {WS_KEY}"}]
)
async def test_wavespeed_refuses_a_missing_or_wrong_key(
    emu: Emulator, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(ULTRA, json={"image": IMAGE_URL, "prompt": "p"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"code": 401, "message": "Unauthorized: invalid authentication", "data": None}
    assert emu.submissions() == []


@pytest.mark.anyio
async def test_vtrix_refuses_a_wrong_key(emu: Emulator, client: httpx.AsyncClient) -> None:
    response = await client.post(VX_SUBMIT, json=vx_body(), headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json() == {"message": "API key missing or invalid", "error": "unauthorized"}
    assert emu.submissions() == []


@pytest.mark.anyio
async def test_a_key_of_none_accepts_any_bearer_key() -> None:
    emu = Emulator()
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://testserver") as client:
        ok = await client.get("/api/v3/balance", headers={"Authorization": "Bearer anything"})
        empty = await client.get("/api/v3/balance", headers={"Authorization": "Bearer "})
    assert (ok.status_code, empty.status_code) == (200, 401)


@pytest.mark.anyio
async def test_vtrix_insufficient_balance_is_403(emu: Emulator, client: httpx.AsyncClient) -> None:
    emu.vtrix_balance_ok = False
    response = await client.post(VX_SUBMIT, json=vx_body(), headers=VX)
    assert response.status_code == 403
    assert response.json()["message"] == "insufficient balance"


# --- request validation --------------------------------------------------------------------

GOOD = {"image": IMAGE_URL, "prompt": "a cat"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "complaint"),
    [
        (ULTRA, {"prompt": "a cat"}, "'image' is required"),
        (ULTRA, {"image": IMAGE_URL}, "'prompt' is required"),
        (ULTRA, {**GOOD, "prompt": ""}, "'prompt' must not be empty"),
        (ULTRA, {**GOOD, "duration": "5"}, "'duration' must be an integer"),
        (ULTRA, {**GOOD, "duration": 5.0}, "'duration' must be an integer"),
        (ULTRA, {**GOOD, "duration": 6}, "'duration' must be one of 5, 8"),
        (ULTRA, {**GOOD, "seed": -2}, "'seed' must be at least -1"),
        (ULTRA, {**GOOD, "seed": 2_147_483_648}, "'seed' must be at most 2147483647"),
        (ULTRA, {**GOOD, "resolution": "480p"}, "unknown field 'resolution'"),
        (ULTRA, {**GOOD, "enable_sync_mode": "yes"}, "'enable_sync_mode' must be a boolean"),
        (LORA, {**GOOD, "loras": [{"path": "a", "scale": 1}] * 4}, "'loras' may have at most 3 items"),
        (LORA, {**GOOD, "loras": [{"path": "a", "scale": 4.5}]}, "'loras[0].scale' must be at most 4"),
        (LORA, {**GOOD, "high_noise_loras": [{"scale": 1}]}, "'high_noise_loras[0].path' is required"),
        (LORA, {**GOOD, "low_noise_loras": [{"path": "a", "scale": 1, "x": 1}]}, "unknown field"),
        (LORA, {**GOOD, "loras": ["a"]}, "'loras[0]' must be a JSON object"),
        (I2V, {**GOOD, "resolution": "1080p"}, "'resolution' must be one of 480p, 720p"),
        (I2V, {**GOOD, "size": "832*480"}, "unknown field 'size'"),
        (WAN21, {**GOOD, "size": "1280*720"}, "'size' must be one of 832*480, 480*832"),
        (WAN21, {**GOOD, "duration": 11}, "'duration' must be at most 10"),
        (WAN21, {**GOOD, "num_inference_steps": 0}, "'num_inference_steps' must be at least 1"),
        (WAN21, {**GOOD, "guidance_scale": True}, "'guidance_scale' must be a number"),
        (WAN21, {**GOOD, "flow_shift": 0.5}, "'flow_shift' must be at least 1"),
        (WAN21, {**GOOD, "last_image": IMAGE_URL}, "unknown field 'last_image'"),
        (WAN21, [GOOD], "body must be a JSON object"),
    ],
)
async def test_wavespeed_refuses_bodies_outside_the_documented_table(
    emu: Emulator, client: httpx.AsyncClient, path: str, body: object, complaint: str
) -> None:
    response = await client.post(path, json=body, headers=WS)
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == 400
    assert payload["data"] is None
    assert complaint in payload["message"]
    assert emu.submissions() == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ULTRA, {**GOOD, "last_image": IMAGE_URL, "duration": 8, "seed": -1, "negative_prompt": "blur"}),
        (LORA, {**GOOD, "loras": [{"path": "a", "scale": 0}] * 3, "high_noise_loras": [], "seed": 7}),
        (I2V, {**GOOD, "resolution": "720p", "duration": 5, "enable_base64_output": False}),
        (WAN21, {**GOOD, "size": "480*832", "duration": 7, "guidance_scale": 7.5, "flow_shift": 10}),
        (WAN21, {**GOOD, "num_inference_steps": 40, "enable_safety_checker": False}),
    ],
)
async def test_wavespeed_accepts_every_documented_parameter(
    emu: Emulator, client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    response = await client.post(path, json=body, headers=WS)
    assert response.status_code == 200, response.text
    assert emu.submissions("wavespeed")[0].body == body


@pytest.mark.anyio
async def test_wavespeed_refuses_a_body_that_is_not_json(client: httpx.AsyncClient) -> None:
    response = await client.post(ULTRA, content=b"{nope", headers=WS)
    assert response.status_code == 400
    assert response.json()["message"] == "request body is not valid JSON"


@pytest.mark.anyio
async def test_an_unknown_wavespeed_model_is_404(emu: Emulator, client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v3/wavespeed-ai/wan-9/t2v", json=GOOD, headers=WS)
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert emu.calls[-1].route == "ws.submit"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"model": "wan22_i2v_flash", "input": {"prompt": "x"}}, "'input.img_url' is required"),
        ({"model": "wan22_i2v_flash"}, "'input' is required"),
        ({**vx_body(), "extra": 1}, "unknown field 'extra'"),
        ({**vx_body(), "model": "wan26_i2v"}, "'model' must be one of wan22_i2v_flash"),
        (
            {"model": "wan22_i2v_flash", "input": [{"params": {"img_url": IMAGE_URL}}]},
            "'input' must be an object",
        ),
        (vx_body(resolution="1080P"), "'parameters.resolution' must be one of 480P, 720P"),
        (vx_body(resolution="480p"), "'parameters.resolution' must be one of 480P, 720P"),
        (vx_body(duration=10), "'parameters.duration' must be one of 5"),
        (vx_body(seed=-1), "'parameters.seed' must be at least 0"),
        (vx_body(watermark="no"), "'parameters.watermark' must be a boolean"),
        (vx_body(prompt_extend=1), "'parameters.prompt_extend' must be a boolean"),
        (vx_body(img_url="ftp://example.com/a.png"), "http(s) URL or a data:"),
        (vx_body(img_url="/home/me/cat.png"), "http(s) URL or a data:"),
        (vx_body(img_url="data:image/png;base64,%%%"), "not valid base64"),
        (vx_body(img_url=data_uri(b"not an image")), "could not be decoded"),
        (vx_body(img_url=data_uri(image_bytes(300, 400))), "300x400"),
        (vx_body(img_url=data_uri(image_bytes(2001, 400))), "2001x400"),
        (vx_body(img_url=data_uri(image_bytes(mode="RGBA", color=(1, 2, 3, 4)))), "alpha"),
        (vx_body(img_url=data_uri(image_bytes(fmt="GIF"), "image/gif")), "format GIF"),
        (vx_body(img_url=data_uri(image_bytes(), "text/plain")), "image MIME type"),
    ],
)
async def test_vtrix_refuses_bodies_outside_the_documented_table(
    emu: Emulator, client: httpx.AsyncClient, body: dict[str, object], complaint: str
) -> None:
    response = await client.post(VX_SUBMIT, json=body, headers=VX)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "invalid_request"
    assert complaint in payload["message"]
    assert emu.submissions() == []


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
async def test_vtrix_accepts_each_documented_image_format(
    emu: Emulator, client: httpx.AsyncClient, fmt: str
) -> None:
    uri = data_uri(image_bytes(360, 2000, fmt), f"image/{fmt.lower()}")
    await vx_job(client, vx_body(uri, resolution="480P", duration=5, seed=0, watermark=True))
    assert emu.submissions("vtrix")[0].model == "wan22_i2v_flash"


@pytest.mark.anyio
async def test_vtrix_accepts_an_over_long_prompt_as_its_doc_says_it_truncates(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    body = vx_body()
    body["input"] = {"prompt": "x" * 900, "negative_prompt": "y" * 600, "img_url": IMAGE_URL}
    await vx_job(client, body)
    assert len(emu.submissions("vtrix")) == 1


# --- job lifecycles ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_wavespeed_job_runs_to_a_decodable_video(emu: Emulator, client: httpx.AsyncClient) -> None:
    submitted = await client.post(
        ULTRA, json={**GOOD, "image": data_uri(image_bytes()), "duration": 8}, headers=WS
    )
    data = submitted.json()["data"]
    assert submitted.json()["code"] == 200
    assert data["status"] == "created"
    assert data["model"] == "wavespeed-ai/wan-2.2/i2v-480p-ultra-fast"
    assert data["urls"]["get"] == f"http://testserver/api/v3/predictions/{data['id']}/result"
    assert data["created_at"].endswith("Z")

    with anyio.fail_after(5):
        seen = [(await ws_poll(client, data["id"]))["status"] for _ in range(3)]
        done = await ws_poll(client, data["id"])
        video = await client.get(done["outputs"][0])

    assert seen == ["created", "processing", "completed"]
    assert done["outputs"] == [f"http://testserver/sandbox/files/{data['id']}.mp4"]
    assert done["has_nsfw_contents"] == [False]
    assert done["error"] == ""
    assert done["timings"]["inference"] > 0
    assert video.headers["content-type"] == "video/mp4"
    clip = decode(video.content)
    assert (clip.frames, clip.width, clip.height) == (8 * 16, 208, 120)
    assert clip.seconds == pytest.approx(8, abs=0.1)
    assert clip.center[0] > 150 > clip.center[1]  # the red input image, not the synthetic still
    assert emu.jobs[data["id"]].state == "completed"
    assert emu.jobs[data["id"]].polls == 4
    assert [call.route for call in emu.calls] == ["ws.submit", *["ws.result"] * 4, "file"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "inputs", "size"),
    [
        (WAN21, {"size": "480*832", "duration": 6}, (120, 208)),
        (I2V, {"resolution": "720p"}, (320, 180)),
    ],
)
async def test_wavespeed_videos_have_the_requested_size_and_duration(
    emu: Emulator, client: httpx.AsyncClient, path: str, inputs: dict[str, object], size: tuple[int, int]
) -> None:
    emu.polls_to_complete = 0
    job_id = await ws_job(client, path, **inputs)
    done = await ws_poll(client, job_id)
    with anyio.fail_after(5):
        clip = decode((await client.get(done["outputs"][0])).content)
    duration = inputs.get("duration", 5)
    assert isinstance(duration, int)
    assert (clip.width, clip.height, clip.frames) == (*size, duration * emu.fps)


@pytest.mark.anyio
async def test_a_vtrix_job_runs_to_a_decodable_video(emu: Emulator, client: httpx.AsyncClient) -> None:
    uri = data_uri(image_bytes(720, 1280, "JPEG", color=(20, 40, 220)), "image/jpeg")
    submitted = await client.post(VX_SUBMIT, json=vx_body(uri, resolution="480P"), headers=VX)
    task = submitted.json()
    assert set(task) == {"id", "created_at", "status", "model"}
    assert isinstance(task["created_at"], int)
    assert task["created_at"] > 1_700_000_000_000

    with anyio.fail_after(5):
        running = [await vx_poll(client, task["id"]) for _ in range(2)]
        done = await vx_poll(client, task["id"])
        video = await client.get(done["output"][0]["content"][0]["url"])

    assert [r["status"] for r in running] == ["in_progress", "in_progress"]
    assert all(0 <= r["progress"] < 1 and "output" not in r and "usage" not in r for r in running)
    assert done["status"] == "completed"
    assert "progress" not in done
    assert "error" not in done
    assert done["output"] == [
        {
            "content": [
                {"type": "video", "url": f"http://testserver/sandbox/files/{task['id']}.mp4", "duration": 5}
            ],
            "jobId": task["id"],
        }
    ]
    assert done["usage"] == {"cost": "0.07", "discount": 0}
    assert done["metadata"] == {}
    clip = decode(video.content)
    assert (clip.width, clip.height, clip.frames) == (120, 208, 80)  # 480x832: the portrait input
    assert clip.center[2] > 150 > clip.center[0]


@pytest.mark.anyio
@pytest.mark.parametrize("envelope", [False, True])
@pytest.mark.parametrize(
    "statuses", [("in_progress", "completed"), ("processing", "success"), ("in_queue", "success")]
)
async def test_vtrix_answers_in_either_documented_shape_and_spelling(
    emu: Emulator, client: httpx.AsyncClient, envelope: bool, statuses: tuple[str, str]
) -> None:
    emu.vtrix_envelope = envelope
    emu.vtrix_statuses = statuses
    emu.polls_to_complete = 1

    def unwrap(payload: dict[str, Any]) -> dict[str, Any]:
        if envelope:
            assert payload["status"] == {"code": 200, "message": "success"}
            return payload["data"]
        return payload

    submitted = unwrap((await client.post(VX_SUBMIT, json=vx_body(), headers=VX)).json())
    first = unwrap((await client.get(f"/model/v1/generation/task/{submitted['id']}", headers=VX)).json())
    last = unwrap((await client.get(f"/model/v1/generation/task/{submitted['id']}", headers=VX)).json())
    assert (submitted["status"], first["status"], last["status"]) == (statuses[0], statuses[0], statuses[1])
    assert last["usage"]["cost"] == "0.14"  # 720P, the documented default


@pytest.mark.anyio
async def test_a_job_is_only_found_on_its_own_providers_route(client: httpx.AsyncClient) -> None:
    ws_id = await ws_job(client)
    vx_id = await vx_job(client)
    wrong_ws = await client.get(f"/api/v3/predictions/{vx_id}/result", headers=WS)
    wrong_vx = await client.get(f"/model/v1/generation/task/{ws_id}", headers=VX)
    missing = await client.get("/api/v3/predictions/nope", headers=WS)
    assert wrong_ws.json() == {"code": 404, "message": "prediction not found", "data": None}
    assert (wrong_ws.status_code, wrong_vx.status_code, missing.status_code) == (404, 404, 404)
    assert wrong_vx.json()["error"] == "not_found"


@pytest.mark.anyio
async def test_the_result_alias_without_result_suffix_polls_too(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    job_id = await ws_job(client)
    response = await client.get(f"/api/v3/predictions/{job_id}", headers=WS)
    assert response.json()["data"]["id"] == job_id
    assert emu.jobs[job_id].polls == 1
    assert emu.calls[-1].route == "ws.result"


@pytest.mark.anyio
async def test_a_video_is_not_served_before_its_job_completes(client: httpx.AsyncClient) -> None:
    job_id = await ws_job(client)
    assert (await client.get(f"/sandbox/files/{job_id}.mp4")).status_code == 404


@pytest.mark.anyio
async def test_hold_keeps_jobs_running_until_released(emu: Emulator, client: httpx.AsyncClient) -> None:
    emu.hold = True
    first, second = await ws_job(client), await ws_job(client)
    for _ in range(5):
        assert (await ws_poll(client, first))["status"] in ("created", "processing")
    emu.release(first)
    assert (await ws_poll(client, first))["status"] == "completed"
    assert (await ws_poll(client, second))["status"] in ("created", "processing")
    emu.release()
    assert (await ws_poll(client, second))["status"] == "completed"


@pytest.mark.anyio
async def test_job_seconds_completes_jobs_by_wall_time(emu: Emulator, client: httpx.AsyncClient) -> None:
    emu.job_seconds = 3600
    slow = await vx_job(client)
    for _ in range(5):
        assert (await vx_poll(client, slow))["status"] == "in_progress"
    emu.job_seconds = 0
    assert (await vx_poll(client, slow))["status"] == "completed"


@pytest.mark.anyio
async def test_fail_next_job_fails_exactly_one_job_per_call(emu: Emulator, client: httpx.AsyncClient) -> None:
    emu.polls_to_complete = 0
    emu.fail_next_job("content rejected")
    emu.fail_next_job()
    failed_ws = await ws_job(client)
    failed_vx = await vx_job(client)
    fine = await ws_job(client)

    ws_result = await ws_poll(client, failed_ws)
    vx_result = await vx_poll(client, failed_vx)
    assert (ws_result["status"], ws_result["error"], ws_result["outputs"]) == (
        "failed",
        "content rejected",
        [],
    )
    assert vx_result["status"] == "failed"
    assert vx_result["error"] == {"code": "002014001", "message": "Video generation failed"}
    assert "output" not in vx_result
    assert (await ws_poll(client, fine))["status"] == "completed"
    assert [job.state for job in emu.submissions()] == ["failed", "failed", "completed"]
    assert (await client.get(f"/sandbox/files/{failed_ws}.mp4")).status_code == 404


# --- faults --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_status_fault_answers_the_vendor_error_and_creates_nothing(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    emu.inject("ws.submit", Fault.status(429, retry_after=2))
    emu.inject("vx.submit", Fault.status(503))
    limited = await client.post(ULTRA, json=GOOD, headers=WS)
    down = await client.post(VX_SUBMIT, json=vx_body(), headers=VX)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json() == {"code": 429, "message": "Too Many Requests", "data": None}
    assert down.status_code == 503
    assert down.json() == {"message": "Service Unavailable", "error": "service_unavailable"}
    assert "retry-after" not in down.headers
    assert emu.submissions() == []
    await ws_job(client)
    await vx_job(client)
    assert len(emu.submissions()) == 2


@pytest.mark.anyio
async def test_a_status_fault_can_carry_its_own_body(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject("ws.balance", Fault.status(400, body={"error": "webhook with base64 output"}))
    emu.inject("ws.balance", Fault.status(502, body="<html>bad gateway</html>"))
    first = await client.get("/api/v3/balance", headers=WS)
    second = await client.get("/api/v3/balance", headers=WS)
    assert (first.status_code, first.json()) == (400, {"error": "webhook with base64 output"})
    assert (second.status_code, second.text) == (502, "<html>bad gateway</html>")


@pytest.mark.anyio
async def test_faults_are_consumed_in_order_each_the_given_number_of_times(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    job_id = await ws_job(client)
    emu.inject("ws.result", Fault.status(500), times=2)
    emu.inject("*", Fault.status(503))
    codes = [
        (await client.get(f"/api/v3/predictions/{job_id}/result", headers=WS)).status_code for _ in range(4)
    ]
    assert codes == [500, 500, 503, 200]
    assert emu.jobs[job_id].polls == 1  # refused polls do not move the job


@pytest.mark.anyio
async def test_a_malformed_fault_answers_200_with_html(emu: Emulator, client: httpx.AsyncClient) -> None:
    emu.inject("vx.submit", Fault.malformed())
    response = await client.post(VX_SUBMIT, json=vx_body(), headers=VX)
    assert response.status_code == 200
    with pytest.raises(ValueError, match="Expecting value"):
        response.json()
    assert emu.submissions() == []


@pytest.mark.anyio
@pytest.mark.parametrize(("route", "path"), [("ws.submit", ULTRA), ("vx.submit", VX_SUBMIT)])
async def test_a_dropped_submit_creates_the_job_but_loses_the_answer(
    emu: Emulator, client: httpx.AsyncClient, route: str, path: str
) -> None:
    emu.inject(route, Fault.drop())
    body = GOOD if route == "ws.submit" else vx_body()
    headers = WS if route == "ws.submit" else VX
    with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
        await client.post(path, json=body, headers=headers)
    assert len(emu.submissions()) == 1
    assert emu.calls[-1].json == body


@pytest.mark.anyio
async def test_a_delay_past_the_client_timeout_is_a_read_timeout_with_no_effect(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    emu.inject("ws.submit", Fault.delay(30))
    with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
        await client.post(ULTRA, json=GOOD, headers=WS, timeout=0.05)
    assert emu.submissions() == []
    emu.inject("ws.submit", Fault.delay(0.01))
    with anyio.fail_after(5):
        await ws_job(client)
    assert len(emu.submissions()) == 1


@pytest.mark.anyio
async def test_a_truncated_download_breaks_the_connection_once(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    emu.polls_to_complete = 0
    job_id = await ws_job(client)
    url = (await ws_poll(client, job_id))["outputs"][0]
    emu.inject("file", Fault.truncate())
    with anyio.fail_after(5):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
        whole = await client.get(url)
    assert decode(whole.content).frames == 80


# --- uploads -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_binary_upload_can_be_the_jobs_image(emu: Emulator, client: httpx.AsyncClient) -> None:
    png = image_bytes(color=(30, 200, 30))
    uploaded = await client.post(
        "/api/v3/media/upload/binary", files={"file": ("my cat.png", png, "image/png")}, headers=WS
    )
    data = uploaded.json()["data"]
    assert uploaded.json()["code"] == 200
    assert data["type"] == "image"
    assert (data["filename"], data["size"]) == ("my cat.png", len(png))
    assert data["download_url"].startswith("http://testserver/sandbox/uploads/")
    assert data["download_url"].endswith("/my%20cat.png")
    assert (await client.get(data["download_url"])).content == png

    emu.polls_to_complete = 0
    job_id = await ws_job(client, image=data["download_url"])
    done = await ws_poll(client, job_id)
    with anyio.fail_after(5):
        clip = decode((await client.get(done["outputs"][0])).content)
    assert clip.center[1] > 150 > clip.center[0]


@pytest.mark.anyio
async def test_a_binary_upload_needs_the_key_and_a_file_field(client: httpx.AsyncClient) -> None:
    no_key = await client.post("/api/v3/media/upload/binary", files={"file": ("a.png", b"x")})
    no_file = await client.post("/api/v3/media/upload/binary", files={"other": ("a.png", b"x")}, headers=WS)
    assert no_key.status_code == 401
    assert no_file.status_code == 400
    assert no_file.json()["message"] == "multipart field 'file' is required"


@pytest.mark.anyio
async def test_a_ticket_upload_takes_one_exact_unauthenticated_put(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    png = image_bytes()
    ticket = await client.post(
        "/api/v3/media/uploads", json={"filename": "cat.png", "size": len(png)}, headers=WS
    )
    data = ticket.json()["data"]
    upload = data["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "image/png"}
    assert (await client.get(data["download_url"])).status_code == 404

    put_url, headers = upload["url"], upload["headers"]
    with_auth = await client.put(put_url, content=png, headers={**headers, **WS})
    short = await client.put(put_url, content=png[:-1], headers=headers)
    wrong_type = await client.put(put_url, content=png, headers={"Content-Type": "image/jpeg"})
    assert (with_auth.status_code, short.status_code, wrong_type.status_code) == (400, 400, 400)
    assert (await client.get(data["download_url"])).status_code == 404

    stored = await client.put(put_url, content=png, headers=headers)
    assert stored.status_code == 200
    fetched = await client.get(data["download_url"])
    assert (fetched.content, fetched.headers["content-type"]) == (png, "image/png")
    assert [call.route for call in emu.calls].count("ws.upload_put") == 4


@pytest.mark.anyio
async def test_a_ticket_keeps_the_given_content_type(client: httpx.AsyncClient) -> None:
    ticket = await client.post(
        "/api/v3/media/uploads",
        json={"filename": "clip", "size": 3, "content_type": "video/mp4"},
        headers=WS,
    )
    data = ticket.json()["data"]
    assert (data["type"], data["upload"]["headers"]) == ("video", {"Content-Type": "video/mp4"})
    bad = await client.post("/api/v3/media/uploads", json={"filename": "a.png"}, headers=WS)
    assert (bad.status_code, bad.json()["message"]) == (400, "'size' is required")


@pytest.mark.anyio
@pytest.mark.parametrize(("enabled", "open_route"), [({"ticket"}, "uploads"), ({"binary"}, "upload/binary")])
async def test_a_disabled_upload_route_is_404(
    emu: Emulator, client: httpx.AsyncClient, enabled: set[str], open_route: str
) -> None:
    emu.upload_routes = enabled
    binary = await client.post("/api/v3/media/upload/binary", files={"file": ("a.png", b"x")}, headers=WS)
    ticket = await client.post("/api/v3/media/uploads", json={"filename": "a.png", "size": 1}, headers=WS)
    codes = {"upload/binary": binary.status_code, "uploads": ticket.status_code}
    assert codes[open_route] == 200
    assert sorted(codes.values()) == [200, 404]


# --- price, balance, history ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model_id", "inputs", "price"),
    [
        ("wavespeed-ai/wan-2.2/i2v-480p-ultra-fast", {"duration": 5}, 0.05),
        ("wavespeed-ai/wan-2.2/i2v-480p-ultra-fast", {"duration": 8}, 0.08),
        ("wavespeed-ai/wan-2.2/i2v-480p-lora-ultra-fast", {}, 0.10),
        ("wavespeed-ai/wan-2.2/i2v-480p-lora-ultra-fast", {"duration": 8}, 0.16),
        ("wavespeed-ai/wan-2.2/image-to-video", {"duration": 5}, 0.15),
        ("wavespeed-ai/wan-2.2/image-to-video", {"duration": 8}, 0.24),
        ("wavespeed-ai/wan-2.2/image-to-video", {"resolution": "720p"}, 0.30),
        ("wavespeed-ai/wan-2.2/image-to-video", {"resolution": "720p", "duration": 8}, 0.48),
        ("wavespeed-ai/wan-2.1/i2v-480p", {"image": IMAGE_URL, "prompt": "p"}, 0.20),
        ("wavespeed-ai/wan-2.1/i2v-480p", {"duration": 10}, 0.40),
    ],
)
async def test_price_quotes_follow_the_seeds(
    client: httpx.AsyncClient, model_id: str, inputs: dict[str, object], price: float
) -> None:
    response = await client.post(
        "/api/v3/model/price", json={"model_id": model_id, "inputs": inputs}, headers=WS
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["model_id"] == model_id
    assert data["price"] == pytest.approx(price)
    assert data["discounted_price"] == pytest.approx(price)
    assert data["currency"] == "USD"


@pytest.mark.anyio
async def test_price_quotes_refuse_unknown_models_and_bad_inputs(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/api/v3/model/price", json={"model_id": "x/y", "inputs": {}}, headers=WS)
    bad = await client.post(
        "/api/v3/model/price",
        json={"model_id": "wavespeed-ai/wan-2.1/i2v-480p", "inputs": {"duration": 4}},
        headers=WS,
    )
    assert unknown.status_code == 404
    assert (bad.status_code, bad.json()["message"]) == (400, "'inputs.duration' must be at least 5")


@pytest.mark.anyio
async def test_balance_is_settable(emu: Emulator, client: httpx.AsyncClient) -> None:
    emu.balance = 1.25
    response = await client.get("/api/v3/balance", headers=WS)
    assert response.json() == {"code": 200, "message": "success", "data": {"balance": 1.25}}


@pytest.mark.anyio
async def test_history_lists_wavespeed_jobs_newest_first_with_filters(
    emu: Emulator, client: httpx.AsyncClient
) -> None:
    emu.polls_to_complete = 0
    first = await ws_job(client)
    second = await ws_job(client, WAN21)
    third = await ws_job(client)
    await vx_job(client)
    await ws_poll(client, first)

    async def history(**query: object) -> dict[str, Any]:
        response = await client.post(
            "/api/v3/predictions", json={"page": 1, "page_size": 10, **query}, headers=WS
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]

    everything = await history()
    assert (everything["page"], everything["total"]) == (1, 3)
    assert [item["id"] for item in everything["items"]] == [third, second, first]
    assert everything["items"][2]["status"] == "completed"
    assert [i["id"] for i in (await history(model="wavespeed-ai/wan-2.1/i2v-480p"))["items"]] == [second]
    assert [i["id"] for i in (await history(status="completed"))["items"]] == [first]
    assert [i["id"] for i in (await history(status="processing"))["items"]] == [third, second]
    assert [i["id"] for i in (await history(page=2, page_size=2))["items"]] == [first]
    assert (await history(created_after="2999-01-01T00:00:00Z"))["total"] == 0
    assert (await history(created_before="2999-01-01T00:00:00"))["total"] == 3

    too_big = await client.post("/api/v3/predictions", json={"page": 1, "page_size": 101}, headers=WS)
    bad_date = await client.post("/api/v3/predictions", json={"created_after": "yesterday"}, headers=WS)
    assert (too_big.status_code, bad_date.status_code) == (400, 400)


# --- recording and routing -----------------------------------------------------------------


@pytest.mark.anyio
async def test_every_request_is_recorded(emu: Emulator, client: httpx.AsyncClient) -> None:
    await client.post(
        ULTRA, params={"webhook": "https://hook"}, json=GOOD, headers={**WS, "X-Client-Name": "t"}
    )
    missing = await client.get("/api/v3/nothing/here", headers=WS)
    assert (missing.status_code, missing.json()["code"]) == (404, 404)
    submit, unknown = emu.calls
    assert (submit.method, submit.path, submit.route) == ("POST", ULTRA, "ws.submit")
    assert submit.query == {"webhook": "https://hook"}
    assert submit.headers["authorization"] == f"Bearer {WS_KEY}"
    assert submit.headers["x-client-name"] == "t"
    assert submit.json == GOOD
    assert (unknown.method, unknown.route, unknown.json) == ("GET", "unknown", None)


def test_importing_the_sandbox_loads_neither_pyav_nor_pillow() -> None:
    code = "import sys, server.sandbox; print(sorted(m for m in ('av', 'PIL') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == "[]"


# --- over a real socket --------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_emulator_serves_a_job_over_loopback_and_drops_connections(emu: Emulator) -> None:
    emu.polls_to_complete = 1
    with anyio.fail_after(10):
        async with serve_emulator(emu) as base_url, httpx.AsyncClient(base_url=base_url, timeout=5) as client:
            assert base_url.startswith("http://127.0.0.1:")
            job_id = await ws_job(client, I2V)
            assert (await ws_poll(client, job_id))["status"] == "processing"
            done = await ws_poll(client, job_id)
            assert done["outputs"] == [f"{base_url}/sandbox/files/{job_id}.mp4"]

            emu.inject("file", Fault.truncate())
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(done["outputs"][0])
            clip = decode((await client.get(done["outputs"][0])).content)
            assert (clip.frames, clip.width, clip.height) == (80, 208, 120)

            emu.inject("ws.submit", Fault.drop())
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(I2V, json=GOOD, headers=WS)
            assert len(emu.submissions()) == 2

            emu.inject("vx.task", Fault.status(429, retry_after=1.5))
            limited = await client.get("/model/v1/generation/task/x", headers=VX)
            assert (limited.status_code, limited.headers["retry-after"]) == (429, "1.5")


@pytest.mark.anyio
async def test_a_delayed_request_abandoned_over_a_socket_has_no_effect(emu: Emulator) -> None:
    # The delay ends well within uvicorn's graceful shutdown, so a handler that missed the
    # disconnect would still create the job before the server stops.
    with anyio.fail_after(5):
        async with serve_emulator(emu) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            emu.inject("ws.submit", Fault.delay(1))
            with pytest.raises(httpx.ReadTimeout):
                await client.post(ULTRA, json=GOOD, headers=WS, timeout=0.2)
    assert emu.submissions() == []
    assert [call.route for call in emu.calls] == ["ws.submit"]
