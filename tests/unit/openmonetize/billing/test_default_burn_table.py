"""The default burn table: provider price x (1 + markup) / credit price, exact, through `rate`."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openmonetize.billing.default_burn_table import DEFAULT_BURN_TABLE_ID, derived
from openmonetize.billing.money import CONTEXT, quantize
from openmonetize.billing.prices import ProviderPrice
from openmonetize.billing.rating import NoRate, RateParams, rate

AT = datetime(2026, 12, 1, tzinfo=timezone.utc)
GPT4_TURBO = ProviderPrice("openai", "gpt-4-turbo", AT, "genai-1", input_mtok=Decimal(10), output_mtok=Decimal(30))


def usage(**units) -> RateParams:
    return RateParams(event_type=units.pop("event_type", "TOKEN_USAGE"), timestamp=AT, provider="openai",
                      model="gpt-4-turbo", **units)


def test_the_seed_example_burns_the_cost_plus_markup_in_credits():
    # 1000 in x $10/M + 500 out x $30/M = $0.025; +20% = $0.03; at $0.01 a credit: 3 credits.
    table = derived("cus_a", GPT4_TURBO, Decimal("0.01"), Decimal("0.2"))
    result = rate(usage(input_tokens=1000, output_tokens=500), table, GPT4_TURBO, Decimal("0.01"))
    assert (result.credits, result.usd_cost, result.revenue_usd) == (Decimal(3), Decimal("0.025"), Decimal("0.03"))
    assert result.margin_percent == Decimal("16.67")
    assert (result.burn_table_id, result.burn_table_version, result.rule_key) == (DEFAULT_BURN_TABLE_ID, 0, "default")


def test_cached_tokens_without_a_cache_price_burn_at_the_input_rate_and_images_per_image():
    table = derived("cus_a", GPT4_TURBO, Decimal("0.01"), Decimal(0))
    cached = rate(usage(input_tokens=1000, cached_input_tokens=400, output_tokens=0), table, GPT4_TURBO, Decimal("0.01"))
    assert cached.credits == Decimal(1)  # $0.01: all 1000 input tokens at $10/M
    dalle = ProviderPrice("openai", "dall-e-3", AT, "v", per_image=Decimal("0.08"))
    images = rate(usage(event_type="IMAGE_GENERATION", image_count=3), derived("c", dalle, Decimal("0.01"), Decimal("0.5")),
                  dalle, Decimal("0.01"))
    assert images.credits == Decimal(36)  # 3 x $0.08 x 1.5 / $0.01


def test_a_component_the_price_lacks_is_refused_not_charged_nothing():
    embedding = ProviderPrice("openai", "text-embedding-3-small", AT, "v", input_mtok=Decimal("0.02"))
    table = derived("cus_a", embedding, Decimal("0.01"), Decimal("0.2"))
    with pytest.raises(NoRate, match="output_tokens"):
        rate(usage(input_tokens=10, output_tokens=5), table, embedding, Decimal("0.01"))


@given(
    input_tokens=st.integers(0, 10**8), output_tokens=st.integers(0, 10**8),
    input_mtok=st.decimals(Decimal("0.0001"), Decimal(1000), places=6),
    output_mtok=st.decimals(Decimal("0.0001"), Decimal(1000), places=6),
    credit_price=st.decimals(Decimal("0.000001"), Decimal(100), places=6),
    markup=st.decimals(Decimal(0), Decimal(10), places=4),
)
def test_credits_equal_the_usd_cost_with_markup_over_the_credit_price(input_tokens, output_tokens, input_mtok,
                                                                       output_mtok, credit_price, markup):
    price = ProviderPrice("openai", "m", AT, "v", input_mtok=input_mtok, output_mtok=output_mtok)
    result = rate(usage(input_tokens=input_tokens, output_tokens=output_tokens),
                  derived("c", price, credit_price, markup), price, credit_price)
    cost = CONTEXT.divide(CONTEXT.add(CONTEXT.multiply(input_tokens, input_mtok),
                                      CONTEXT.multiply(output_tokens, output_mtok)), Decimal(10**6))
    expected = quantize(CONTEXT.divide(CONTEXT.multiply(cost, 1 + markup), credit_price))
    assert abs(result.credits - expected) <= Decimal("1e-12")  # the same figure, up to the last quantum
