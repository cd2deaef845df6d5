"""Rating: an event's units + a burn table + a provider price → credits, USD cost and margin.

Pure: the caller picks the burn-table version and the price in force at the event's timestamp
(`burn_tables.in_force`, `prices.in_force`) and passes them in; the result says which versions
produced it, so a figure can always be traced and re-computed (rebilling replays call this
same function with other versions).

Rounding: every part is computed exactly in the 50-digit context and each of credits, USD
cost, revenue and margin is quantized once, half to even, to 12 decimal places; margin is
revenue minus cost of the already-rounded figures, so the three always add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from openmonetize.billing.burn_tables import BurnTable, RateRule
from openmonetize.billing.money import (
    CONTEXT,
    MAX_DIGITS,
    SCALE,
    ZERO,
    ScaledRates,
    from_units,
    quantize,
    round_half_even,
    to_units,
)
from openmonetize.billing.prices import MTOK, ProviderPrice


class NoRate(Exception):
    """Nothing in the burn table prices this event (DLQ reason `no_rate`); the message says what."""


class RateParams(NamedTuple):
    """The units of one usage event that rating looks at. (A named tuple: the usage agent makes
    one per event, and a frozen dataclass's __init__ cost more than the integer rating.)"""

    event_type: str
    timestamp: datetime
    provider: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    image_count: int | None = None
    image_size: str | None = None
    quality: str | None = None
    unit_type: str | None = None
    quantity: Decimal | None = None

    @classmethod
    def from_record(cls, record: Mapping) -> RateParams:
        """From a usage.events record (the Avro dict)."""
        return cls(*map(record.get, _PARAMS))

    @classmethod
    def from_units(cls, event_type: str, timestamp: datetime, units: object, **given) -> RateParams:
        """From anything with the provider, the model and the unit attributes (a request body),
        `given` replacing some of them."""
        return cls(event_type, timestamp, **{name: given[name] if name in given else getattr(units, name)
                                             for name in _PARAMS[2:]})


_PARAMS = RateParams._fields


class RateResult(NamedTuple):
    credits: Decimal
    usd_cost: Decimal
    revenue_usd: Decimal
    margin_usd: Decimal
    rule_key: str
    burn_table_id: str
    burn_table_version: int
    price_version: str | None

    @property
    def margin_percent(self) -> Decimal | None:
        """Margin as a percentage of revenue (2 decimals, half even); None when revenue is 0."""
        if self.revenue_usd == 0:
            return None
        return CONTEXT.divide(self.margin_usd * 100, self.revenue_usd).quantize(Decimal("0.01"))


def rate(
    usage: RateParams,
    burn_table: BurnTable | None,
    price: ProviderPrice | None,
    credit_price_usd: Decimal,
) -> RateResult:
    """Rate one event. Raises NoRate when the burn table has no rule or rate for its units.

    A missing provider price is not an error (custom units have none): the USD cost is then 0
    and `price_version` is None, so reports can tell "free to us" from "price unknown".
    """
    if burn_table is None:
        raise NoRate(f"no burn table in force at {usage.timestamp.isoformat()}")
    found = burn_table.rule_for(usage.event_type, usage.model, usage.unit_type)
    if found is None:
        raise NoRate(
            f"burn table {burn_table.name!r} v{burn_table.version} has no rule for model {usage.model!r}, "
            f"event type {usage.event_type} and no default rule"
        )
    key, rule = found
    credits = quantize(CONTEXT.divide(_credit_units(usage, key, rule), rule.per_unit))
    usd_cost = quantize(_usd_cost(usage, price)) if price is not None else ZERO
    revenue = quantize(CONTEXT.multiply(credits, credit_price_usd))
    return RateResult(
        credits=credits,
        usd_cost=usd_cost,
        revenue_usd=revenue,
        margin_usd=revenue - usd_cost,
        rule_key=key,
        burn_table_id=burn_table.burn_table_id,
        burn_table_version=burn_table.version,
        price_version=price.version if price is not None else None,
    )


def rate_fast(
    usage: RateParams,
    burn_table: BurnTable | None,
    price: ProviderPrice | None,
    credit_price_usd: Decimal,
) -> RateResult:
    """`rate`, computed in integers of 10^-12 where that gives the very same figures, else `rate`.

    The rule's and the price's rates are scaled to integer weights once (`RateRule.scaled`,
    `ProviderPrice.scaled`: None where the 50-digit context could round), so an event costs a
    few integer products and one half-even rounding per figure instead of a dozen Decimal
    operations. Any case it does not take (a missing rate, a negative count, an amount too
    large for decimal(38, 12)) goes to `rate`, which also raises what `rate` raises.
    tests/unit/openmonetize/billing/test_rating_fast.py checks both agree on random tables,
    prices and usage.
    """
    found = burn_table.rule_for(usage.event_type, usage.model, usage.unit_type) if burn_table is not None else None
    if found is not None:
        key, rule = found
        units = fast_units(usage, rule, price, _units(credit_price_usd))
        if units is not None:
            credits, _usd, revenue = units
            usd_cost = from_units(_usd) if price is not None else ZERO
            revenue_usd = from_units(revenue)
            return RateResult(from_units(credits), usd_cost, revenue_usd, revenue_usd - usd_cost, key,
                              burn_table.burn_table_id, burn_table.version,
                              price.version if price is not None else None)
    return rate(usage, burn_table, price, credit_price_usd)


def fast_units(usage, rule: RateRule, price: ProviderPrice | None, price_units: int | None
               ) -> tuple[int, int, int] | None:
    """(credits, USD cost, revenue) in units of 10^-12 as `rate_fast` computes them with `rule`
    (the burn table's rule for the usage) and `price_units` (the credit price in units, from
    `credit_price_units`), or None where `rate_fast` leaves the event to `rate`. `usage` is
    anything with RateParams' unit attributes (a replay's decoded row)."""
    image = _image_weight(rule, usage) if usage.image_count else "image"
    credits = _scaled_sum(usage, rule.scaled, image, required=True)
    usd = _scaled_sum(usage, price.scaled, "image", required=False) if price is not None else 0
    if credits is not None and usd is not None and price_units is not None and price_units >= 0:
        revenue = round_half_even(credits * price_units, SCALE)
        if max(credits, usd, revenue) < _UNITS_LIMIT:
            return credits, usd, revenue
    return None


def credit_price_units(credit_price_usd: Decimal) -> int | None:
    """A credit price in units of 10^-12 (None: finer than that), remembered."""
    return _units(credit_price_usd)


_UNITS_LIMIT = 10**MAX_DIGITS  # 10^26 in units of 10^-12: what does not fit decimal(38, 12)
_units = lru_cache(maxsize=256)(to_units)  # of the credit prices, a handful


def _image_weight(rule: RateRule, usage: RateParams) -> str:
    key = rule.image_key(usage.image_size, usage.quality)
    return "image" if key is None else f"images:{key}"


def _scaled_sum(usage: RateParams, scaled: ScaledRates | None, image: str, required: bool) -> int | None:
    """Σ units × weight, in units of 10^-12 rounded half to even, as `_credit_units` (`required`:
    every unit used needs a rate) or `_usd_cost` (a unit without a price costs nothing) add
    them up; None where `rate` must decide (a count below zero, a rate missing, no weights)."""
    if scaled is None:
        return None
    weights = scaled.weights
    cached = usage.cached_input_tokens or 0
    total = 0
    # input (less cached), output, cached tokens, images: the same four steps written out (a
    # loop over (name, count) pairs cost a third of the function)
    count = (usage.input_tokens or 0) - cached
    if count:
        weight = weights.get("input_tokens")
        if count < 0 or (weight is None and required):
            return None
        if weight is not None:
            total += count * weight
    count = usage.output_tokens
    if count:
        weight = weights.get("output_tokens")
        if count < 0 or (weight is None and required):
            return None
        if weight is not None:
            total += count * weight
    if cached:
        weight = weights.get("cached_input_tokens")
        if cached < 0 or (weight is None and required):
            return None
        if weight is not None:
            total += cached * weight
    count = usage.image_count
    if count:
        weight = weights.get(image)
        if count < 0 or (weight is None and required):
            return None
        if weight is not None:
            total += count * weight
    shift, quantity = scaled.shift, usage.quantity
    if quantity is not None and (quantity != 0 if required else "unit" in weights):
        weight, quantity_units = weights.get("unit"), to_units(quantity)
        if weight is None or quantity_units is None or quantity_units < 0:
            return None
        total = total * 10**SCALE + quantity_units * weight  # a quantity is counted in units of 10^-12
        shift += SCALE
    return round_half_even(total, shift)


def _credit_units(usage: RateParams, key: str, rule: RateRule) -> Decimal:
    """Σ units × rate, before the per_unit division."""
    parts: list[Decimal] = []
    cached = usage.cached_input_tokens or 0
    billable = {
        "input_tokens": (usage.input_tokens or 0) - cached,
        "output_tokens": usage.output_tokens or 0,
        "cached_input_tokens": cached,
    }
    for name, count in billable.items():
        if not count:
            continue
        rate_ = getattr(rule, name)
        if rate_ is None and name == "cached_input_tokens":
            rate_ = rule.input_tokens  # no cache discount in this rule
        if rate_ is None:
            raise NoRate(f"rule {key!r} has no {name} rate")
        parts.append(CONTEXT.multiply(Decimal(count), rate_))
    if usage.image_count:
        image_rate = rule.image_rate(usage.image_size, usage.quality)
        if image_rate is None:
            raise NoRate(f"rule {key!r} has no image rate for size {usage.image_size!r}, quality {usage.quality!r}")
        parts.append(CONTEXT.multiply(Decimal(usage.image_count), image_rate))
    if usage.quantity is not None and usage.quantity != 0:
        if rule.unit is None:
            raise NoRate(f"rule {key!r} has no unit rate for {usage.unit_type!r}")
        parts.append(CONTEXT.multiply(usage.quantity, rule.unit))
    total = ZERO
    for part in parts:
        total = CONTEXT.add(total, part)
    return total


def _usd_cost(usage: RateParams, price: ProviderPrice) -> Decimal:
    cached = usage.cached_input_tokens or 0
    token_prices = (
        ((usage.input_tokens or 0) - cached, price.input_mtok),
        (cached, price.cache_read_mtok if price.cache_read_mtok is not None else price.input_mtok),
        (usage.output_tokens or 0, price.output_mtok),
    )
    cost = ZERO
    for count, per_mtok in token_prices:
        if count and per_mtok is not None:
            cost = CONTEXT.add(cost, CONTEXT.divide(CONTEXT.multiply(Decimal(count), per_mtok), MTOK))
    if usage.image_count and price.per_image is not None:
        cost = CONTEXT.add(cost, CONTEXT.multiply(Decimal(usage.image_count), price.per_image))
    if usage.quantity is not None and price.per_unit is not None:
        cost = CONTEXT.add(cost, CONTEXT.multiply(usage.quantity, price.per_unit))
    return cost
