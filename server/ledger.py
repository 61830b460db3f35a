"""The spend ledger: estimate and reported cost per job, totals per day and per model."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from server.errors import InvalidRequest

if TYPE_CHECKING:
    from server.jobs.store import Job, JobStore
    from server.settings import SpendPolicy

STATUSES = ("queued", "running", "completed", "failed", "unconfirmed", "cancelled")
_CHARGEABLE = ("pending", "accepted", "unknown", "held")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdw])\s*$", re.I)


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """``24h``/``7d``/``2w`` back from now, or an ISO 8601 date or time (UTC unless it says)."""
    if value is None or not value.strip():
        return None
    now = time.time() if now is None else now
    if match := _DURATION.match(value):
        hours = float(match.group(1)) * {"h": 1, "d": 24, "w": 168}[match.group(2).lower()]
        return now - hours * 3600
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"'since' must be a length such as 24h, 7d or 2w, or an ISO date such as 2026-11-01; "
            f"got {value!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def charged(job: Job) -> float:
    """What a job may have cost: the provider's figure when known, else the estimate."""
    if job.submit_state not in _CHARGEABLE:
        return 0.0
    if job.cost_usd is not None:
        return job.cost_usd
    return job.estimate_usd or 0.0


@dataclass
class Totals:
    """Sums over a group of jobs."""

    jobs: int = 0
    estimated_usd: float = 0.0
    reported_usd: float = 0.0
    charged_usd: float = 0.0

    def add(self, job: Job) -> None:
        self.jobs += 1
        self.estimated_usd += job.estimate_usd or 0.0
        self.reported_usd += job.cost_usd or 0.0
        self.charged_usd += charged(job)

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "estimated_usd": round(self.estimated_usd, 4),
            "reported_usd": round(self.reported_usd, 4),
            "charged_usd": round(self.charged_usd, 4),
        }


@dataclass
class Ledger:
    """Jobs that match a filter, with their totals."""

    jobs: list[Job]
    total: Totals = field(default_factory=Totals)
    by_day: dict[str, Totals] = field(default_factory=dict[str, Totals])
    by_model: dict[str, Totals] = field(default_factory=dict[str, Totals])
    budget: dict[str, Any] | None = None


async def build_ledger(
    store: JobStore,
    spend: SpendPolicy,
    *,
    status: str | None = None,
    model: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> Ledger:
    """The ledger for jobs matching the filters (newest first; totals over all matches)."""
    clauses: list[str] = []
    args: list[Any] = []
    if status is not None:
        clauses.append("status = ?")
        args.append(status)
    if model is not None:
        clauses.append("model = ?")
        args.append(model)
    if since is not None:
        clauses.append("created_at >= ?")
        args.append(since)
    matching = await store.select(" AND ".join(clauses) or "1=1", tuple(args), limit=1_000_000)
    ledger = Ledger(jobs=matching[:limit])
    for job in matching:
        day = datetime.fromtimestamp(job.created_at, UTC).date().isoformat()
        ledger.total.add(job)
        ledger.by_day.setdefault(day, Totals()).add(job)
        ledger.by_model.setdefault(job.model, Totals()).add(job)
    if spend.budget_usd is not None:
        spent = await store.spent_since(time.time() - spend.budget_period_hours * 3600)
        ledger.budget = {
            "budget_usd": spend.budget_usd,
            "period_hours": spend.budget_period_hours,
            "spent_usd": round(spent, 4),
            "left_usd": round(max(spend.budget_usd - spent, 0.0), 4),
        }
    return ledger


def ledger_summary(ledger: Ledger) -> dict[str, Any]:
    """Totals as plain data (structured content and JSON)."""
    summary: dict[str, Any] = {
        "total": ledger.total.as_dict(),
        "by_day": {day: t.as_dict() for day, t in sorted(ledger.by_day.items(), reverse=True)},
        "by_model": {model: t.as_dict() for model, t in sorted(ledger.by_model.items())},
    }
    if ledger.budget is not None:
        summary["budget"] = ledger.budget
    return summary


def format_ledger(ledger: Ledger) -> str:
    """The ledger as a plain-text table for a terminal."""
    lines = [f"{'created (UTC)':<17} {'job id':<44} {'status':<11} {'estimate':>9} {'reported':>9}"]
    for job in ledger.jobs:
        when = datetime.fromtimestamp(job.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        estimate = f"${job.estimate_usd:.2f}" if job.estimate_usd is not None else "-"
        reported = f"${job.cost_usd:.2f}" if job.cost_usd is not None else "-"
        lines.append(f"{when:<17} {job.id:<44} {job.status:<11} {estimate:>9} {reported:>9}")
    if not ledger.jobs:
        lines.append("(no jobs)")
    lines.append("")
    lines.append(f"{'group':<32} {'jobs':>5} {'estimated':>10} {'reported':>10} {'charged':>10}")
    groups = [("total", ledger.total)]
    groups += [(f"day {d}", t) for d, t in sorted(ledger.by_day.items(), reverse=True)]
    groups += [(f"model {m}", t) for m, t in sorted(ledger.by_model.items())]
    for name, t in groups:
        lines.append(
            f"{name:<32} {t.jobs:>5} {f'${t.estimated_usd:.2f}':>10} {f'${t.reported_usd:.2f}':>10} "
            f"{f'${t.charged_usd:.2f}':>10}"
        )
    if ledger.budget is not None:
        b = ledger.budget
        lines.append("")
        lines.append(
            f"budget ${b['budget_usd']:.2f} per {b['period_hours']:g} h: ${b['spent_usd']:.2f} spent, "
            f"${b['left_usd']:.2f} left"
        )
    return "\n".join(lines)
