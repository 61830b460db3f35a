"""Media in and out: image inputs made ready for a provider, finished videos archived."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from server.catalog import ModelSpec
from server.errors import InvalidRequest
from server.jobs.store import Job
from server.settings import Settings


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


def journal_form(value: str) -> str:
    """What the journal keeps of an image argument: never the bytes of a data: URI."""
    if value.startswith("data:"):
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f"{value.split(',', 1)[0]},sha256:{digest}"
    return value


class MediaService:
    """Image inputs and video outputs for the job runner."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

    async def prepare_images(self, spec: ModelSpec, values: Mapping[str, Any]) -> PreparedInputs:
        """Check every image argument and turn it into a URL or data: URI for the provider."""
        ready = dict(values)
        journal = dict(values)
        for param in spec.param:
            if param.kind != "image" or values.get(param.name) is None:
                continue
            raw = str(values[param.name]).strip()
            ready[param.name] = self._image_reference(param.name, raw)
            journal[param.name] = journal_form(raw)
        return PreparedInputs(values=ready, journal_values=journal)

    def _image_reference(self, name: str, raw: str) -> str:
        if raw.startswith("https://") or raw.startswith("data:"):
            return raw
        if raw.startswith("http://"):
            raise InvalidRequest(
                f"'{name}' must be an https:// URL, a data: URI or a local file; got an http:// URL."
            )
        path = Path(raw).expanduser().resolve()
        roots = [r.expanduser().resolve() for r in self._settings.allowed_dirs]
        if not any(path.is_relative_to(root) for root in roots):
            raise InvalidRequest(
                f"'{name}' is a local path outside the folders this server may read; move the file into "
                "one of WAN_MCP_ALLOWED_DIRS or pass an https:// URL."
            )
        if not path.is_file():
            raise InvalidRequest(
                f"'{name}' is not an https:// URL, a data: URI or an existing local file: {raw[:80]!r}."
            )
        data = path.read_bytes()
        mime = {".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp"}.get(
            path.suffix.lower(), "image/jpeg"
        )
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"

    async def archive(self, job: Job, spec: ModelSpec | None) -> Archived | None:
        """Download the finished video (not yet: the provider URL is returned as is)."""
        return None
