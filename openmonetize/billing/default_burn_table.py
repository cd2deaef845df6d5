"""The burn table a tenant without one of its own is rated by, so its first event is charged.

Derived from the provider price in force for the event's model: credits = USD cost x (1 +
markup) / the tenant's credit price. With the default markup of 20% and a credit price of
$0.01, a call that cost us $0.025 burns 3 credits. The markup is the `DEFAULT_BURN_MARKUP`
setting; the credit price is the tenant's (`credit_price_usd`, default $0.01).

It is a real `BurnTable` (id `default`, version 0, one `default` rule), so `rating.rate` prices
it exactly as any other table and every charge names what produced it. A component the
provider price lacks has no rate, so an event that uses it is refused (`no_rate`) rather than
charged nothing; cached input tokens without a cache price burn at the input rate, as the USD
cost counts them. The rates are exact products in the 50-digit context; the credits are
quantized once by `rate`, as always.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache

from openmonetize.billing.burn_tables import DEFAULT_RULE, BurnTable, RateRule
from openmonetize.billing.money import CONTEXT
from openmonetize.billing.prices import MTOK, ProviderPrice

DEFAULT_BURN_TABLE_ID = "default"
DEFAULT_BURN_TABLE_VERSION = 0
DEFAULT_MARKUP = Decimal("0.2")
_SINCE_ALWAYS = datetime(1970, 1, 1, tzinfo=timezone.utc)


@lru_cache(maxsize=4096)  # every event of a tenant without a table asks: derive each once
def derived(customer_id: str, price: ProviderPrice, credit_price_usd: Decimal, markup: Decimal) -> BurnTable:
    """The default burn table of one tenant for one provider price (do not mutate: shared)."""
    credits_per_usd = CONTEXT.divide(CONTEXT.add(Decimal(1), markup), credit_price_usd)

    def per_mtok(usd: Decimal | None, units_per_usd_price: Decimal = Decimal(1)) -> Decimal | None:
        if usd is None:
            return None
        return CONTEXT.multiply(CONTEXT.multiply(usd, units_per_usd_price), credits_per_usd)

    rule = RateRule(
        per_unit=MTOK,
        input_tokens=per_mtok(price.input_mtok),
        output_tokens=per_mtok(price.output_mtok),
        cached_input_tokens=per_mtok(price.cache_read_mtok),
        image=per_mtok(price.per_image, MTOK),  # USD per image, so x MTOK per per_unit
        unit=per_mtok(price.per_unit, MTOK),
    )
    percent = f"{CONTEXT.multiply(markup, Decimal(100)).normalize(CONTEXT):f}"
    return BurnTable(
        burn_table_id=DEFAULT_BURN_TABLE_ID,
        customer_id=customer_id,
        name=f"default: {price.provider}/{price.model} price {price.version} + {percent}%",
        version=DEFAULT_BURN_TABLE_VERSION,
        effective_from=_SINCE_ALWAYS,
        rules={DEFAULT_RULE: rule},
    )
