"""Prices from the catalog, to the cent, each with where its figure comes from."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from server.catalog import ModelSpec

PriceSource = Literal["seed_price_table", "provider_quote", "unverified_estimate"]


class Estimate(BaseModel):
    """A price for one job and where it comes from."""

    model_config = ConfigDict(frozen=True)

    usd: float
    source: PriceSource
    basis: str


def catalog_price(spec: ModelSpec, values: Mapping[str, Any]) -> Estimate:
    """The catalog's price for validated arguments (defaults filled in)."""
    price = spec.price
    if price.kind == "per_second":
        assert price.per_second is not None
        seconds = max(float(values["duration"]), price.min_seconds)
        usd = Decimal(str(price.per_second)) * Decimal(str(seconds))
    else:
        wanted = tuple(values[k] for k in price.keys)
        row = next(r for r in price.rows if tuple((r.model_extra or {})[k] for k in price.keys) == wanted)
        usd = Decimal(str(row.usd))
    source: PriceSource = "seed_price_table" if price.verified else "unverified_estimate"
    return Estimate(usd=round_usd(usd), source=source, basis=price.basis)


def round_usd(value: Decimal | float) -> float:
    """Round half-up to a hundredth of a cent (catalog prices are whole cents already)."""
    return float(Decimal(str(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def price_points(spec: ModelSpec) -> list[tuple[dict[str, Any], Estimate]]:
    """The catalog price of every priced choice combination (a ranged duration at its two ends)."""
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for param in spec.priced_params:
        if param.choices is not None:
            axes.append((param.name, param.choices))
        elif param.min is not None and param.max is not None:
            axes.append((param.name, (int(param.min), int(param.max))))
    combos: list[dict[str, Any]] = [{}]
    for name, values in axes:
        combos = [{**combo, name: value} for combo in combos for value in values]
    defaults = {p.name: p.default for p in spec.param if p.default is not None}
    return [(combo, catalog_price(spec, {**defaults, **combo})) for combo in combos]


def price_range(spec: ModelSpec) -> str:
    """``$0.05-0.08``: the cheapest and dearest catalog price; ``~`` marks an unverified one."""
    prices = sorted(estimate.usd for _, estimate in price_points(spec))
    low, high = prices[0], prices[-1]
    mark = "" if spec.price.verified else "~"
    return f"{mark}${low:.2f}" if low == high else f"{mark}${low:.2f}-{high:.2f}"
