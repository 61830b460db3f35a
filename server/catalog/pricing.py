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
