"""Prompts: ``animate_photo`` (write a Wan prompt, pick a model within a length and a budget) and
``compare_takes`` (judge finished takes, choose between a new seed and a new prompt).

The advice is the providers' own (``../shared/seeds/``: subject + environment + motion + lighting,
camera cues, "text, watermark, distortion" as negatives, ``last_image`` for transitions, a fixed seed
to refine and a new seed for variety); models and prices come from the catalog, so a sixth model
shows up here with no new code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Message, Prompt, PromptArgument, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ImageContent

from server.catalog import ModelSpec
from server.catalog.pricing import catalog_price, price_points
from server.errors import JobNotFound
from tools import AppContext, core_of
from tools.results import poster_base64

if TYPE_CHECKING:
    from server.jobs.store import Job

MAX_TAKES = 8
_NUMBER = re.compile(r"^\$?\s*(\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?|usd|\$)?$", re.IGNORECASE)

PROMPT_RECIPE = """\
1. The prompt. The photo already fixes who is there, the layout and the style; the prompt says what \
happens. One or two plain sentences, in this order:
   - subject, as the photo shows it ("the woman in the red coat");
   - environment and what moves in it ("wind in the tall grass, clouds drifting");
   - motion: one main action with speed and direction ("slowly turns her head to the left");
   - camera: one move ("slow dolly-in", "static shot", "pan right", "orbit left");
   - lighting and mood ("warm golden-hour rim light", "soft overcast light").
   Describe only what can be seen; do not contradict the photo; no negations ("no people") here.
2. negative_prompt: what must not appear, as a short list: "text, watermark, distortion, blurry, \
warped face, extra fingers, flicker, jump cut", plus anything specific to this photo.
3. last_image: only when the video must end on a given frame (a transition between two photos, a \
before/after, a reveal); same framing and aspect ratio as the first image. Otherwise leave it out \
and the model chooses the ending."""

TAKES_RECIPE = """\
How to judge each completed take (the poster is a frame about a third of the way in; open \
local_path or video_url to see the motion):
- identity: faces, hands, text and logos stay as in the photo (no melting, no morphing);
- motion: the asked-for action happens, at a natural speed, without flicker or jitter;
- camera: the move asked for, smooth, no cuts or jumps;
- prompt: every element of the prompt is there, nothing the negative_prompt excludes;
- artefacts: warped limbs, extra fingers, smeared background, watermark.
Rank the takes, say which is best and why in one line each.

Then the retry, if one is needed:
- New seed, same prompt, when the takes are close: the idea is right and the faults differ from \
take to take (a glitchy hand, a flicker, weak motion). Call generate with the same arguments, \
another seed and new_take=true.
- New prompt, same seed, when every take misses the same way: the wrong action or camera move, \
the subject changes, something unwanted appears (add it to negative_prompt), motion too strong or \
too weak (change the speed words). Change one thing at a time; keep the best take's seed so the \
difference comes from the prompt. A take made with seed -1 cannot be repeated: give explicit \
seeds when refining.
- Another model or setting when the model is the limit: more detail at 720p, a longer clip, LoRAs \
for a style.
- A failed take: read its error; a refused image or prompt needs a change, a provider error can be \
retried as it is."""


def refuse(message: str) -> MCPError:
    """A prompt argument error the client sees as written (the SDK hides other exceptions' text)."""
    return MCPError(code=INVALID_PARAMS, message=message)


def _parse_number(text: str | None, what: str) -> float | None:
    if text is None or not text.strip():
        return None
    match = _NUMBER.match(text.strip())
    if match is None:
        example = "8" if what == "length" else "0.30"
        raise refuse(f"'{what}' must be a number such as {example}; got {text!r}.")
    return float(match.group(1))


def _allows(spec: ModelSpec, length: float) -> bool:
    duration = spec.params.get("duration")
    if duration is None or not length.is_integer():
        return False
    if duration.choices is not None:
        return length in duration.choices
    return (duration.min or 0) <= length <= (duration.max or 0)


def offers(spec: ModelSpec, length: float | None) -> list[tuple[str, float]]:
    """(setting, USD) for each priced setting: at every length, or at the asked one."""
    if length is None:
        return [(_label(combo), estimate.usd) for combo, estimate in price_points(spec)]
    if not _allows(spec, length):
        return []
    defaults = {p.name: p.default for p in spec.param if p.default is not None}
    out: dict[str, float] = {}
    for combo, _ in price_points(spec):
        setting = {k: v for k, v in combo.items() if k != "duration"}
        label = _label(setting)
        if label not in out:
            out[label] = catalog_price(spec, {**defaults, **setting, "duration": int(length)}).usd
    return list(out.items())


def _lengths(spec: ModelSpec) -> str:
    duration = spec.params.get("duration")
    if duration is None:
        return "?"
    if duration.choices is not None:
        return " or ".join(str(c) for c in duration.choices) + " s"
    return f"{duration.min:.0f}-{duration.max:.0f} s"


def _label(combo: dict[str, Any]) -> str:
    return ", ".join(f"{v} s" if k == "duration" else f"{v}" for k, v in combo.items())


def model_table(models: Sequence[ModelSpec], length: float | None, budget: float | None) -> str:
    """One line per model with its price points; the ones that fit the length and budget marked."""
    lines: list[str] = []
    fitting: list[tuple[float, str]] = []
    for spec in models:
        points: list[str] = []
        for setting, usd in offers(spec, length):
            label = f"{setting}: ${usd:.2f}" if setting else f"${usd:.2f}"
            points.append(label)
            if budget is None or usd <= budget + 1e-9:
                fitting.append((usd, f"{spec.slug} {label}"))
        verified = "" if spec.price.verified or not points else ", unverified estimate"
        offer = "; ".join(points) if points else f"cannot make {length:g} s"
        lines.append(f"- {spec.slug} ({_lengths(spec)}): {spec.blurb} {offer}{verified}.")
    fitting.sort()
    if not fitting:
        verdict = "No enabled model fits"
        verdict += f" {length:g} s" if length is not None else ""
        verdict += f" within ${budget:.2f}" if budget is not None else ""
        verdict += ": tell the user, and offer the nearest option from the list."
    else:
        head = "Fits, cheapest first" if length is not None or budget is not None else "Cheapest"
        verdict = f"{head}: {', '.join(label for _, label in fitting[:4])}."
        verdict += " Take the cheapest for a first try; a dearer setting (720p, longer) once it works."
    return "\n".join([*lines, verdict])


def animate_photo_text(
    models: Sequence[ModelSpec], image: str, idea: str, length: str | None, budget: str | None
) -> str:
    """The ``animate_photo`` prompt's text."""
    seconds = _parse_number(length, "length")
    usd = _parse_number(budget, "budget")
    wants = [f"Image: {image}", f"Idea: {idea}"]
    if seconds is not None:
        wants.append(f"Length: {seconds:g} s")
    if usd is not None:
        wants.append(f"Budget: ${usd:.2f} for this video")
    last_image = [m.slug for m in models if "last_image" in m.params]
    return "\n".join(
        [
            "Turn this photo into a short video with a Wan image-to-video model.",
            *wants,
            "",
            PROMPT_RECIPE,
            f"   Models that take last_image: {', '.join(last_image) or 'none enabled'}.",
            "4. The model (catalog prices in USD):",
            model_table(models, seconds, usd),
            "5. Call <model>_estimate_cost with the chosen arguments, show the user the price, then "
            "<model>_generate_video with image, prompt, negative_prompt and the settings (duration, "
            "resolution or size); if it returns "
            "before the video is done, call get_result with its job_id.",
        ]
    )


def _take_line(job: Job) -> str:
    params = {k: v for k, v in job.params.items() if k not in ("image", "last_image") and v is not None}
    cost = job.cost_usd if job.cost_usd is not None else job.estimate_usd
    money = f", ${cost:.2f}" if cost is not None else ""
    state = job.status if job.status != "failed" else f"failed: {job.error or 'unknown error'}"
    return f"- {job.id} ({job.model}, {state}{money}): {params}"


def split_job_ids(text: str) -> list[str]:
    """Job ids from a comma- or space-separated list, in order, without repeats."""
    ids = [part for part in re.split(r"[\s,]+", text.strip()) if part]
    return list(dict.fromkeys(ids))


def _no_extras(prompt: str, unknown: dict[str, str], known: Sequence[str]) -> None:
    if unknown:
        raise refuse(f"Unknown argument(s) {', '.join(sorted(unknown))}; {prompt} takes {', '.join(known)}.")


def register_prompts(server: MCPServer[Any], models: Sequence[ModelSpec]) -> None:
    """Add ``animate_photo`` and ``compare_takes`` to ``server``.

    The prompts are built directly rather than with ``Prompt.from_function``: that derives a
    pydantic model per prompt at start-up, and every argument of a prompt is a string anyway.
    """
    animate_args = [
        PromptArgument(
            name="image", description="The photo: https URL, data: URI or local file path.", required=True
        ),
        PromptArgument(
            name="idea", description="What should happen in the video, in the user's words.", required=True
        ),
        PromptArgument(name="length", description="Seconds wanted, such as 5 or 8."),
        PromptArgument(name="budget", description="Most the user will pay, in USD."),
    ]

    async def animate_photo(
        image: str, idea: str, length: str | None = None, budget: str | None = None, **unknown: str
    ) -> str:
        _no_extras("animate_photo", unknown, [a.name for a in animate_args])
        return animate_photo_text(models, image, idea, length, budget)

    async def compare_takes(ctx: AppContext, job_ids: str, **unknown: str) -> list[Message]:
        _no_extras("compare_takes", unknown, ["job_ids"])
        ids = split_job_ids(job_ids)
        if not ids:
            raise refuse("'job_ids' needs at least one job id; list_jobs shows recent ones.")
        if len(ids) > MAX_TAKES:
            raise refuse(f"'job_ids' names {len(ids)} jobs; compare at most {MAX_TAKES} at a time.")
        store = (await core_of(ctx, refuse)).store
        jobs: list[Job] = []
        for job_id in ids:
            try:
                jobs.append(await store.get(job_id))
            except JobNotFound:
                raise refuse(f"Unknown job id {job_id!r}; list_jobs shows recent ones.") from None
        unfinished = [job.id for job in jobs if not job.is_final]
        head = [
            f"Compare these {len(jobs)} takes of an image-to-video job and choose the next step.",
            "Takes (model, status, cost, parameters):",
            *(_take_line(job) for job in jobs),
        ]
        if unfinished:
            head.append(f"Not finished yet: {', '.join(unfinished)}; call get_result on them first.")
        messages: list[Message] = [UserMessage("\n".join([*head, "", TAKES_RECIPE]))]
        for job in jobs:
            poster = poster_base64(job.poster_path) if job.status == "completed" else None
            if poster is not None:
                messages.append(UserMessage(f"Poster of {job.id}:"))
                messages.append(UserMessage(ImageContent(type="image", data=poster, mime_type="image/jpeg")))
        return messages

    server.add_prompt(
        Prompt(
            name="animate_photo",
            title="Animate a photo",
            description="How to write a Wan image-to-video prompt for this photo and which model fits "
            "the length and budget, with prices.",
            arguments=animate_args,
            fn=animate_photo,
            context_kwarg=None,
        )
    )
    server.add_prompt(
        Prompt(
            name="compare_takes",
            title="Compare video takes",
            description="Judge finished takes from their posters and parameters; retry with a new seed "
            "or a new prompt.",
            arguments=[
                PromptArgument(
                    name="job_ids", description="Job ids of the takes, comma-separated.", required=True
                )
            ],
            fn=compare_takes,
            context_kwarg="ctx",
        )
    )


__all__ = ["animate_photo_text", "register_prompts", "split_job_ids"]
