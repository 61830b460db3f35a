"""WaveSpeed webhooks: the signature check and the payload, with no web framework inside.

WaveSpeed signs each callback (providers.md section 1.6): headers ``webhook-id``,
``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v3,<hex>``, the hex being
HMAC-SHA256 over ``<id>.<timestamp>.<raw body>`` keyed with the account's secret minus its
``whsec_`` prefix, used as text. This is Standard-Webhooks-like but not compatible with it
(``v1``, base64, a decoded key), so it is checked here.

A verified callback is still only a wake-up: the job's status is read back from the provider.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from server.providers.http import as_dict

MAX_AGE_SECONDS = 300
# WaveSpeed echoes the job's input, inlined images included.
MAX_BODY_BYTES = 32 * 1024 * 1024
Verdict = Literal["ok", "missing", "stale", "bad_signature"]


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header WaveSpeed sends for this delivery."""
    key = secret.removeprefix("whsec_").encode()
    digest = hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v3,{digest}"


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> Verdict:
    """Whether a delivery is WaveSpeed's, fresh, and signed over exactly this raw body.

    ``headers`` must be keyed in lower case. Several space-separated signatures are accepted
    (a secret being rotated); each is compared in constant time.
    """
    delivery_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (delivery_id and stamp.isdigit() and signatures):
        return "missing"
    if abs(now - int(stamp)) > MAX_AGE_SECONDS:
        return "stale"
    wanted = sign(secret, delivery_id, int(stamp), body).removeprefix("v3,")
    for part in signatures.split():
        version, _, value = part.partition(",")
        if version == "v3" and hmac.compare_digest(value.encode(), wanted.encode()):
            return "ok"
    return "bad_signature"


@dataclass(frozen=True, slots=True)
class Callback:
    """What a callback claims: which task, in which state (to be confirmed by a status read)."""

    task_id: str
    status: str


def parse_callback(body: bytes) -> Callback | None:
    """The task a callback is about (the bare prediction, or wrapped in ``data``); None if unreadable."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    outer = as_dict(payload)
    if outer is None:
        return None
    data = as_dict(outer.get("data")) or outer
    task_id, status = data.get("id"), data.get("status")
    if not isinstance(task_id, str) or not task_id.strip():
        return None
    return Callback(task_id=task_id.strip(), status=str(status or "").strip().lower())
