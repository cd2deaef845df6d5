from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.billing.prices import ProviderPrice, in_force, snapshot
from openmonetize.billing.rating import NoRate, RateParams, rate

AT = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
TABLE = BurnTable(
    "bt_1", "cus_a", "standard", 3, datetime(2026, 1, 1, tzinfo=timezone.utc),
    parse_rules({
        "gpt-4o": {"input_tokens": "2.5", "output_tokens": "10", "cached_input_tokens": "1.25", "per_unit": 1000},
        "claude-haiku": {"input_tokens": "1", "output_tokens": "5", "per_unit": 1000},
        "dall-e-3": {"images": {"1024x1024": "4", "1024x1024:hd": "8"}},
        "CUSTOM:requests": {"unit": "0.01"},
    }),
)
GPT4O = ProviderPrice("openai", "gpt-4o", datetime(2026, 1, 1, tzinfo=timezone.utc), "genai-2026-01-01",
                      input_mtok=Decimal("2.5"), output_mtok=Decimal("10"), cache_read_mtok=Decimal("1.25"))
CREDIT_PRICE = Decimal("0.01")  # USD per credit


def tokens(model="gpt-4o", **units) -> RateParams:
    return RateParams(event_type="TOKEN_USAGE", timestamp=AT, provider="openai", model=model, **units)


def test_token_event_credits_cost_and_margin():
    result = rate(tokens(input_tokens=1000, output_tokens=100, cached_input_tokens=200), TABLE, GPT4O, CREDIT_PRICE)
    # credits: (800 x 2.5 + 200 x 1.25 + 100 x 10) / 1000 = 3.25
    assert result.credits == Decimal("3.250000000000")
    # USD: 800 x 2.5/1M + 200 x 1.25/1M + 100 x 10/1M = 0.00325
    assert result.usd_cost == Decimal("0.003250000000")
    assert result.revenue_usd == Decimal("0.032500000000")
    assert result.margin_usd == result.revenue_usd - result.usd_cost
    assert result.margin_percent == Decimal("90.00")
    assert (result.rule_key, result.burn_table_version, result.price_version) == ("gpt-4o", 3, "genai-2026-01-01")


def test_usd_cost_agrees_with_genai_prices():
    ours = rate(tokens(input_tokens=123_456, output_tokens=7_890, cached_input_tokens=10_000), TABLE, GPT4O, CREDIT_PRICE)
    theirs = calc_price(Usage(input_tokens=123_456, output_tokens=7_890, cache_read_tokens=10_000), "gpt-4o", provider_id="openai")
    assert ours.usd_cost == theirs.total_price.quantize(Decimal("1e-12"))


def test_cached_tokens_without_a_cached_rate_burn_at_the_input_rate():
    result = rate(tokens("claude-haiku", input_tokens=1000, output_tokens=0, cached_input_tokens=400), TABLE, None, CREDIT_PRICE)
    assert result.credits == Decimal("1.000000000000")
    assert result.usd_cost == 0 and result.price_version is None


def test_images_by_size_and_quality_and_custom_units():
    image = RateParams(event_type="IMAGE_GENERATION", timestamp=AT, model="dall-e-3", image_count=3, image_size="1024x1024", quality="hd")
    assert rate(image, TABLE, None, CREDIT_PRICE).credits == Decimal("24.000000000000")
    custom = RateParams(event_type="CUSTOM", timestamp=AT, unit_type="requests", quantity=Decimal("12345.5"))
    assert rate(custom, TABLE, None, CREDIT_PRICE).credits == Decimal("123.455000000000")


def test_rounding_is_half_even_at_12_places():
    table = BurnTable("bt", "cus", "t", 1, AT, parse_rules({"m": {"input_tokens": "0.0000000000005"}}))
    assert rate(tokens("m", input_tokens=1, output_tokens=0), table, None, CREDIT_PRICE).credits == Decimal("0")
    assert rate(tokens("m", input_tokens=3, output_tokens=0), table, None, CREDIT_PRICE).credits == Decimal("0.000000000002")


@pytest.mark.parametrize(
    "usage, table, message",
    [
        (tokens("o3", input_tokens=1, output_tokens=1), TABLE, "no rule for model 'o3'"),
        (tokens("dall-e-3", input_tokens=5, output_tokens=0), TABLE, "has no input_tokens rate"),
        (RateParams(event_type="IMAGE_GENERATION", timestamp=AT, model="dall-e-3", image_count=1, image_size="512x512"), TABLE, "no image rate"),
        (RateParams(event_type="CUSTOM", timestamp=AT, unit_type="minutes", quantity=Decimal(1)), TABLE, "no rule"),
        (tokens(input_tokens=1, output_tokens=1), None, "no burn table in force"),
    ],
)
def test_no_rate_says_what_is_missing(usage, table, message):
    with pytest.raises(NoRate, match=message):
        rate(usage, table, None, CREDIT_PRICE)


def test_from_record_reads_the_avro_dict():
    record = {"event_type": "TOKEN_USAGE", "timestamp": AT, "model": "gpt-4o", "input_tokens": 10, "output_tokens": 2,
              "event_id": "e", "customer_id": "c", "metadata": None}
    params = RateParams.from_record(record)
    assert (params.model, params.input_tokens, params.output_tokens, params.quantity) == ("gpt-4o", 10, 2, None)


def test_genai_snapshot_prices_current_models():
    prices = snapshot(date(2026, 11, 26), "genai-test")
    gpt = in_force([p for p in prices if (p.provider, p.model) == ("openai", "gpt-4o")], AT)
    assert gpt is not None and gpt.input_mtok == Decimal("2.5") and gpt.output_mtok == Decimal("10")
    assert len({p.provider for p in prices}) > 10
