"""Provider prices: what a call costs us in USD, per provider and model, versioned by date.

The source is the maintained `genai-prices` dataset (offline, bundled with the package), which
`snapshot()` flattens into one `ProviderPrice` per provider model at a given date; the control
plane stores snapshots as price versions and tenants can override a model's price. Flattening
rules: a price with date constraints takes the variant in force at the snapshot date; tiered
prices (e.g. dearer above 200k context tokens) take their base tier; time-of-day variants take
the unconstrained one. A tenant override is the way to bill a tier exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import cached_property

from openmonetize.billing.money import ScaledRates, scaled_rates

MTOK = Decimal(1_000_000)
ONE = Decimal(1)


@dataclass(frozen=True)
class ProviderPrice:
    """USD per million tokens (and per image / per unit where the provider charges so)."""

    provider: str
    model: str
    effective_from: datetime
    version: str
    input_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    cache_read_mtok: Decimal | None = None
    per_image: Decimal | None = None
    per_unit: Decimal | None = None

    @cached_property
    def scaled(self) -> ScaledRates | None:
        """The USD rates as integer weights (per token over MTOK, per image, per unit of
        quantity), for rating's integer path; None when they are not exact in it. Cached
        tokens without a price of their own cost as input tokens."""
        cached = self.cache_read_mtok if self.cache_read_mtok is not None else self.input_mtok
        rates = {"input_tokens": (self.input_mtok, MTOK), "output_tokens": (self.output_mtok, MTOK),
                 "cached_input_tokens": (cached, MTOK), "image": (self.per_image, ONE), "unit": (self.per_unit, ONE)}
        return scaled_rates({name: r for name, r in rates.items() if r[0] is not None}, quantities=("unit",))


def in_force(versions: Sequence[ProviderPrice], at: datetime) -> ProviderPrice | None:
    """The price in force at `at`: the latest effective_from not after it; before the first
    version, the first. A price set now also prices the events reported late (up to the
    accepted window, 35 days), instead of leaving them at no price."""
    best = first = None
    for price in versions:
        if first is None or price.effective_from < first.effective_from:
            first = price
        if price.effective_from <= at and (best is None or price.effective_from > best.effective_from):
            best = price
    return best if best is not None else first


def snapshot(at: date, version: str) -> list[ProviderPrice]:
    """Every provider model of the bundled genai-prices dataset, priced as of `at`."""
    from genai_prices.data_snapshot import get_snapshot

    effective = datetime(at.year, at.month, at.day, tzinfo=timezone.utc)
    prices = []
    for provider in get_snapshot().providers:
        for model in provider.models:
            chosen = _price_at(model.prices, at)
            if chosen is None:
                continue
            prices.append(
                ProviderPrice(
                    provider=provider.id,
                    model=model.id,
                    effective_from=effective,
                    version=version,
                    input_mtok=_base(getattr(chosen, "input_mtok", None)),
                    output_mtok=_base(getattr(chosen, "output_mtok", None)),
                    cache_read_mtok=_base(getattr(chosen, "cache_read_mtok", None)),
                )
            )
    return prices


def _price_at(prices, at: date):
    """A ModelPrice, or from a list of ConditionalPrice the one in force at `at`."""
    if not isinstance(prices, Iterable):
        return prices
    best, best_start = None, None
    for conditional in prices:
        constraint = conditional.constraint
        start = getattr(constraint, "start_date", None)
        if constraint is None or (start is not None and start <= at):
            if best is None or (start is not None and (best_start is None or start > best_start)):
                best, best_start = conditional.prices, start
    return best


def _base(value) -> Decimal | None:
    """A plain price, or the base tier of tiered prices."""
    if value is None or isinstance(value, Decimal):
        return value
    return getattr(value, "base", None)
