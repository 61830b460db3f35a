"""Variants: several takes of one request in one call, each with its own explicit seed.

Seeds are distinct and written into each take's journal row. A given ``seed`` is the first
take's and the others follow it; without one, the seeds are derived from the request itself, so
repeating the same call names the same takes and the duplicate guard answers it with the earlier
jobs (``new_take`` draws fresh random seeds instead). The whole set is priced as one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from server.catalog import ModelSpec
from server.catalog.params import NOTHING_SENT
from server.catalog.pricing import Estimate, round_usd
from server.errors import InvalidRequest
from server.jobs.store import Job

if TYPE_CHECKING:
    from server.jobs.runner import JobRunner, ProgressCallback

VARIANTS = "variants"
MAX_VARIANTS = 4
SEED_SPAN = 2**31  # 0 ... 2147483647, what both providers accept


def parse_variants(value: Any) -> int:
    """``variants`` checked: an integer from 1 to 4; 1 when absent."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VARIANTS:
        raise InvalidRequest(
            f"'variants' must be an integer from 1 to {MAX_VARIANTS}; got {value!r}. {NOTHING_SENT}"
        )
    return value


def group_estimate(one: Estimate, variants: int) -> Estimate:
    """The price of ``variants`` takes, each priced ``one``."""
    if variants == 1:
        return one
    return Estimate(
        usd=round_usd(one.usd * variants),
        source=one.source,
        basis=f"{variants} takes at ${one.usd:.2f} each; {one.basis}",
    )


def take_values(
    spec: ModelSpec, values: Mapping[str, Any], variants: int, *, new_take: bool = False
) -> list[dict[str, Any]]:
    """The validated arguments of each take: ``values`` with a distinct explicit seed each.

    Raises:
        InvalidRequest: the model has no seed, so its takes could not differ.
    """
    if "seed" not in spec.params:
        raise InvalidRequest(f"{spec.slug} takes no seed, so it cannot make variants. {NOTHING_SENT}")
    given = values.get("seed")
    if isinstance(given, int) and given >= 0:
        first = given
    elif new_take:
        first = secrets.randbelow(SEED_SPAN)
    else:
        blob = json.dumps({"model": spec.slug, "values": values}, sort_keys=True, default=str)
        first = int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "big") % SEED_SPAN
    return [{**values, "seed": (first + n) % SEED_SPAN} for n in range(variants)]


async def wait_for_takes(
    runner: JobRunner, jobs: Sequence[Job], wait_seconds: float, on_progress: ProgressCallback | None
) -> list[Job]:
    """Wait up to ``wait_seconds`` in all for every take to end; progress covers the whole set."""
    deadline = anyio.current_time() + wait_seconds
    done: list[Job] = []
    for number, job in enumerate(jobs):
        remaining = deadline - anyio.current_time()
        if remaining <= 0 or not job.is_live:
            done.append(await runner.store.get(job.id) if job.is_live else job)
            continue
        report = None if on_progress is None else _scaled(on_progress, number, len(jobs))
        done.append(await runner.wait(job.id, remaining, report))
    return done


def _scaled(on_progress: ProgressCallback, number: int, count: int) -> ProgressCallback:
    async def report(fraction: float, message: str) -> None:
        await on_progress((number + fraction) / count, f"take {number + 1}/{count}: {message}")

    return report
