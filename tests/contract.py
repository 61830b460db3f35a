"""The public contract (../shared/design/contract.md) written out independently of the catalog,
so tests check the catalog against the spec rather than against itself."""

from __future__ import annotations

from typing import Any

INT_MAX = 2147483647

WS_SEED = {"type": "integer", "minimum": -1, "maximum": INT_MAX, "default": -1}
LORAS = {"maxItems": 3, "scale": (0, 4)}

# slug -> parameter -> expected schema facts
PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "wan22_i2v_480p_ultra_fast": {
        "image": {"required": True},
        "prompt": {"required": True},
        "negative_prompt": {},
        "last_image": {},
        "duration": {"enum": [5, 8], "default": 5},
        "seed": WS_SEED,
    },
    "wan22_i2v_480p_lora_ultra_fast": {
        "image": {"required": True},
        "prompt": {"required": True},
        "negative_prompt": {},
        "last_image": {},
        "duration": {"enum": [5, 8], "default": 5},
        "loras": LORAS,
        "high_noise_loras": LORAS,
        "low_noise_loras": LORAS,
        "seed": WS_SEED,
    },
    "wan22_i2v": {
        "image": {"required": True},
        "prompt": {"required": True},
        "negative_prompt": {},
        "last_image": {},
        "duration": {"enum": [5, 8], "default": 5},
        "resolution": {"enum": ["480p", "720p"], "default": "480p"},
        "seed": WS_SEED,
    },
    "wan21_i2v_480p": {
        "image": {"required": True},
        "prompt": {"required": True},
        "negative_prompt": {},
        "duration": {"type": "integer", "minimum": 5, "maximum": 10, "default": 5},
        "size": {"enum": ["832*480", "480*832"], "default": "832*480"},
        "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 40, "default": 30},
        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20, "default": 5},
        "flow_shift": {"type": "number", "minimum": 1, "maximum": 10, "default": 3},
        "seed": WS_SEED,
    },
    "wan22_i2v_flash": {
        "image": {"required": True},
        "prompt": {"maxLength": 800},
        "negative_prompt": {"maxLength": 500},
        "duration": {"enum": [5], "default": 5},
        "resolution": {"enum": ["480P", "720P"], "default": "720P"},
        "prompt_extend": {"type": "boolean", "default": True},
        "watermark": {"type": "boolean", "default": False},
        "seed": {"type": "integer", "minimum": -1, "maximum": INT_MAX},
    },
}

# slug -> list of (arguments, USD) from the contract's price table
PRICES: dict[str, list[tuple[dict[str, Any], float]]] = {
    "wan22_i2v_480p_ultra_fast": [({"duration": 5}, 0.05), ({"duration": 8}, 0.08)],
    "wan22_i2v_480p_lora_ultra_fast": [({"duration": 5}, 0.10), ({"duration": 8}, 0.16)],
    "wan22_i2v": [
        ({"resolution": "480p", "duration": 5}, 0.15),
        ({"resolution": "480p", "duration": 8}, 0.24),
        ({"resolution": "720p", "duration": 5}, 0.30),
        ({"resolution": "720p", "duration": 8}, 0.48),
    ],
}
UNVERIFIED = ("wan21_i2v_480p", "wan22_i2v_flash")

ENDPOINTS = {
    "wan22_i2v_480p_ultra_fast": "/api/v3/wavespeed-ai/wan-2.2/i2v-480p-ultra-fast",
    "wan22_i2v_480p_lora_ultra_fast": "/api/v3/wavespeed-ai/wan-2.2/i2v-480p-lora-ultra-fast",
    "wan22_i2v": "/api/v3/wavespeed-ai/wan-2.2/image-to-video",
    "wan21_i2v_480p": "/api/v3/wavespeed-ai/wan-2.1/i2v-480p",
    "wan22_i2v_flash": "/model/v1/generation",
}

CONTRACT_TOOLS = sorted(
    [f"{slug}_generate_video" for slug in PARAMS]
    + [f"{slug}_estimate_cost" for slug in PARAMS]
    + ["get_result"]
)
# The contract's eleven tools, plus the spend ledger the project adds, the player's app-only
# video reader (listed to every client; Apps hosts hide it from the model) and stitch_videos.
TOOL_NAMES = sorted([*CONTRACT_TOOLS, "list_jobs", "read_video_chunk", "stitch_videos"])


def bad_values(slug: str) -> list[tuple[str, Any]]:
    """(parameter, value) pairs just outside each documented bound."""
    out: list[tuple[str, Any]] = []
    for name, facts in PARAMS[slug].items():
        if "enum" in facts:
            enum = facts["enum"]
            out.append((name, 7 if isinstance(enum[0], int) else "1080p"))
        if "minimum" in facts:
            low = facts["minimum"]
            out.append((name, low - 1 if facts.get("type") == "integer" else low - 0.5))
            high = facts["maximum"]
            out.append((name, high + 1 if facts.get("type") == "integer" else high + 0.5))
        if "maxLength" in facts:
            out.append((name, "x" * (facts["maxLength"] + 1)))
        if "maxItems" in facts:
            out.append((name, [{"path": f"lora/{i}", "scale": 1.0} for i in range(facts["maxItems"] + 1)]))
            low, high = facts["scale"]
            out.append((name, [{"path": "lora/a", "scale": high + 0.5}]))
            out.append((name, [{"path": "lora/a", "scale": low - 0.5}]))
        if facts.get("type") == "boolean":
            out.append((name, "maybe"))
    return out


def _wavespeed_place(name: str) -> tuple[str, ...]:
    return (name,)


def _vtrix_place(name: str) -> tuple[str, ...]:
    return ("parameters", name)


# Where each vendor's document puts a parameter in the request body (seeds 000-004). WaveSpeed: the
# tool's names at the top level. Vtrix: the image (as img_url) and the texts under `input`,
# everything else under `parameters`.
BODY_PLACES: dict[str, dict[str, Any]] = {
    "wavespeed": {"*": _wavespeed_place},
    "vtrix": {
        "*": _vtrix_place,
        "image": ("input", "img_url"),
        "prompt": ("input", "prompt"),
        "negative_prompt": ("input", "negative_prompt"),
    },
}
# Values a vendor documents as "leave the field out": Vtrix picks a random seed when it is omitted
# and documents 0..2147483647, so our -1 (random) is not sent.
OMITTED_FROM_BODY: dict[tuple[str, str], Any] = {("vtrix", "seed"): -1}
