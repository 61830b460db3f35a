"""Files: WaveSpeed's two upload routes, the uploaded bytes, and the rendered videos."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .routing import base_url, bearer_ok, endpoint, read_json, ws_error
from .schema import Field, Schema, as_object, check
from .state import Upload

if TYPE_CHECKING:
    from .emulator import Emulator

_TICKET_BODY: Schema = {
    "filename": Field("string", required=True),
    "size": Field("integer", required=True, minimum=1),
    "content_type": Field("string"),
}


def data_uri_bytes(uri: str) -> bytes | None:
    """The payload of a ``data:<mime>;base64,<data>`` URI, or None when it is not one."""
    header, comma, payload = uri.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def routes(emu: Emulator) -> list[Route]:
    """Upload and download routes, bound to ``emu``."""

    def refuse(request: Request, kind: str) -> Response | None:
        if kind not in emu.upload_routes:
            return ws_error(404, "Not Found")
        if not bearer_ok(request, emu.wavespeed_key):
            return ws_error(401, "Unauthorized: invalid authentication")
        return None

    async def upload_binary(request: Request) -> Response:
        if refused := refuse(request, "binary"):
            return refused
        try:
            async with request.form() as form:
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    return ws_error(400, "multipart field 'file' is required")
                data = await file.read()
                filename = _clean_name(file.filename)
                content_type = file.content_type or _guess_type(filename)
        except MultiPartException as exc:
            return ws_error(400, f"bad multipart body: {exc.message}")
        item = emu.upload(filename, content_type, len(data), data)
        return JSONResponse({"code": 200, "message": "success", "data": _describe(item, base_url(request))})

    async def upload_ticket(request: Request) -> Response:
        if refused := refuse(request, "ticket"):
            return refused
        ok, body = await read_json(request)
        problem = check(body, _TICKET_BODY) if ok else "request body is not valid JSON"
        ticket = as_object(body)
        if problem or ticket is None:
            return ws_error(400, problem or "body must be a JSON object")
        filename = _clean_name(str(ticket["filename"]))
        content_type = str(ticket.get("content_type") or _guess_type(filename))
        size = ticket["size"]
        item = emu.upload(filename, content_type, size if isinstance(size, int) else 0, None)
        base = base_url(request)
        data = {
            **_describe(item, base),
            "upload": {
                "method": "PUT",
                "url": f"{base}/sandbox/put/{item.token}",
                "headers": {"Content-Type": item.content_type},
            },
        }
        return JSONResponse({"code": 200, "message": "success", "data": data})

    async def upload_put(request: Request) -> Response:
        item = emu.uploads.get(request.path_params["token"])
        if item is None:
            return PlainTextResponse("no such upload", 404)
        if "authorization" in request.headers:
            return PlainTextResponse("the upload URL is pre-signed: send no Authorization header", 400)
        if request.headers.get("content-type") != item.content_type:
            return PlainTextResponse(f"Content-Type must be {item.content_type}", 400)
        data = await request.body()
        if len(data) != item.size:
            return PlainTextResponse(f"expected {item.size} bytes, got {len(data)}", 400)
        item.data = data
        return Response(status_code=200)

    async def uploaded(request: Request) -> Response:
        item = emu.uploads.get(request.path_params["token"])
        if item is None or item.data is None:
            return PlainTextResponse("Not Found", 404)
        return Response(item.data, media_type=item.content_type)

    async def video(request: Request) -> Response:
        job = emu.jobs.get(request.path_params["id"])
        if job is None or job.state != "completed":
            return PlainTextResponse("Not Found", 404)
        return Response(await emu.video(job), media_type="video/mp4")

    return [
        Route(
            "/api/v3/media/upload/binary", endpoint(emu, "ws.upload_binary", upload_binary), methods=["POST"]
        ),
        Route("/api/v3/media/uploads", endpoint(emu, "ws.upload_ticket", upload_ticket), methods=["POST"]),
        Route("/sandbox/put/{token}", endpoint(emu, "ws.upload_put", upload_put), methods=["PUT"]),
        Route("/sandbox/uploads/{token}/{name}", endpoint(emu, "file", uploaded), methods=["GET"]),
        Route("/sandbox/files/{id}.mp4", endpoint(emu, "file", video), methods=["GET"]),
    ]


def _describe(item: Upload, base: str) -> dict[str, object]:
    return {
        "type": item.content_type.partition("/")[0] if _is_media(item.content_type) else "file",
        "download_url": f"{base}/sandbox/uploads/{item.token}/{quote(item.filename)}",
        "filename": item.filename,
        "size": item.size,
    }


def _is_media(content_type: str) -> bool:
    return content_type.partition("/")[0] in ("image", "video", "audio")


def _clean_name(name: str | None) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base or "upload"


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
