"""`rate_fast` (integers of 10^-12) gives exactly `rate`'s figures, or raises what `rate` raises:
on random burn-table rules, provider prices, credit prices and usage, edge cases included."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from openmonetize.billing import rating
from openmonetize.billing.burn_tables import BurnTable, RateRule
from openmonetize.billing.default_burn_table import derived
from openmonetize.billing.prices import ProviderPrice
from openmonetize.billing.rating import RateParams, rate, rate_fast

AT = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
SIZES = ("1024x1024", "1024x1792", "512x512")
QUALITIES = ("hd", "standard")


def decimals(max_digits: int = 30, max_places: int = 30) -> st.SearchStrategy[Decimal]:
    """Non-negative decimals from a handful of digits to many, with up to `max_places` decimals."""
    return st.builds(lambda digits, places: Decimal(digits).scaleb(-places),
                     st.integers(0, 10**max_digits), st.integers(0, max_places))


rates = st.one_of(st.none(), decimals(), st.sampled_from([Decimal("2.5"), Decimal("0.075"), Decimal("1E+3"),
                                                           Decimal("0.0000000000005"), Decimal("-1")]))
per_units = st.one_of(st.sampled_from([Decimal(1), Decimal(1000), Decimal(10**6), Decimal(3), Decimal(7),
                                        Decimal("0.5"), Decimal("0.001"), Decimal(1024), Decimal("2.5")]),
                      decimals(8, 6).filter(lambda d: d > 0))
rules = st.builds(
    RateRule, per_unit=per_units, input_tokens=rates, output_tokens=rates, cached_input_tokens=rates, image=rates,
    images=st.dictionaries(st.sampled_from([*SIZES, *(f"{s}:{q}" for s in SIZES for q in QUALITIES)]),
                           decimals(12, 14), max_size=3),
    unit=rates,
)
prices = st.one_of(st.none(), st.builds(
    ProviderPrice, provider=st.just("openai"), model=st.just("m"), effective_from=st.just(AT), version=st.just("v1"),
    input_mtok=rates, output_mtok=rates, cache_read_mtok=rates, per_image=rates, per_unit=rates,
))
credit_prices = st.one_of(st.sampled_from([Decimal("0.01"), Decimal("0.001"), Decimal("0.03"), Decimal(1),
                                           Decimal("7.5"), Decimal("0.0000000000001"), Decimal(0)]),
                          decimals(6, 14))
counts = st.one_of(st.none(), st.just(0), st.integers(0, 10**6), st.integers(0, 2**63 - 1), st.integers(-5, -1))
quantities = st.one_of(st.none(), st.just(Decimal(0)), decimals(26, 12), decimals(4, 14),
                       decimals(10, 12).map(lambda d: -d), st.just(Decimal("1E+30")))
usages = st.builds(
    RateParams, event_type=st.sampled_from(["TOKEN_USAGE", "IMAGE_GENERATION", "CUSTOM"]), timestamp=st.just(AT),
    provider=st.just("openai"), model=st.just("m"), input_tokens=counts, output_tokens=counts,
    cached_input_tokens=counts, image_count=counts, image_size=st.sampled_from([None, *SIZES, "256x256"]),
    quality=st.sampled_from([None, *QUALITIES]), unit_type=st.sampled_from([None, "requests"]), quantity=quantities,
)


# Shaped like real tables and usage, so that most examples take the integer path (the ones
# above mostly test the way back to `rate`): every rate there, per_unit a power of 2 and 5
# times 10^k, counts from none to the largest Avro long, quantities of up to 12 decimals.
some_rates = st.one_of(decimals(8, 12), decimals(3, 0))
real_rules = st.builds(
    RateRule, per_unit=st.sampled_from([Decimal(1), Decimal(1000), Decimal(10**6), Decimal("0.5"), Decimal(1024),
                                        Decimal("2.5"), Decimal("0.001")]),
    input_tokens=some_rates, output_tokens=some_rates, cached_input_tokens=st.one_of(st.none(), some_rates),
    image=some_rates, images=st.dictionaries(st.sampled_from(SIZES), some_rates, max_size=2), unit=some_rates,
)
real_prices = st.one_of(st.none(), st.builds(
    ProviderPrice, provider=st.just("openai"), model=st.just("m"), effective_from=st.just(AT), version=st.just("v1"),
    input_mtok=some_rates, output_mtok=some_rates, cache_read_mtok=st.one_of(st.none(), some_rates),
    per_image=st.one_of(st.none(), some_rates), per_unit=st.one_of(st.none(), some_rates),
))
real_counts = st.one_of(st.none(), st.integers(0, 10**5), st.integers(0, 2**63 - 1))
real_usages = st.builds(
    lambda usage, cached: usage._replace(cached_input_tokens=min(cached, usage.input_tokens or 0)),
    st.builds(RateParams, event_type=st.just("TOKEN_USAGE"), timestamp=st.just(AT), input_tokens=real_counts,
              output_tokens=real_counts, image_count=real_counts, image_size=st.sampled_from([None, *SIZES]),
              quantity=st.one_of(st.none(), decimals(20, 12))),
    st.integers(0, 10**6),
)


def table(rule: RateRule) -> BurnTable:
    return BurnTable("bt", "cus", "random", 2, AT, {"default": rule})


def outcome(rate_with, *args):
    """The result, every amount with its exact Decimal representation; or the exception raised."""
    try:
        result = rate_with(*args)
    except Exception as exc:  # noqa: BLE001 - the same exception, whatever it is, is the point
        return type(exc), str(exc)
    amounts = (result.credits, result.usd_cost, result.revenue_usd, result.margin_usd)
    return result, [a.as_tuple() for a in amounts]


def assert_same(usage, burn_table, price, credit_price) -> None:
    assert outcome(rate_fast, usage, burn_table, price, credit_price) == outcome(rate, usage, burn_table, price,
                                                                                   credit_price)


@settings(max_examples=1000, deadline=None)
@given(usages, rules, prices, credit_prices)
@example(RateParams("TOKEN_USAGE", AT, input_tokens=0, output_tokens=0), RateRule(input_tokens=Decimal(1)), None,
         Decimal("0.01"))
@example(RateParams("TOKEN_USAGE", AT, input_tokens=2**63 - 1, output_tokens=2**63 - 1),
         RateRule(per_unit=Decimal(1000), input_tokens=Decimal(10**9), output_tokens=Decimal(10**9)), None,
         Decimal("0.01"))
def test_the_integer_path_equals_rate(usage, rule, price, credit_price):
    assert_same(usage, table(rule), price, credit_price)


@settings(max_examples=1000, deadline=None)
@given(real_usages, real_rules, real_prices, st.sampled_from([Decimal("0.01"), Decimal("0.002"), Decimal("1.25")]))
def test_the_integer_path_equals_rate_on_everyday_shapes(usage, rule, price, credit_price):
    assert_same(usage, table(rule), price, credit_price)


@pytest.mark.parametrize("tokens, credits", [(1, "0E-12"), (3, "2E-12"), (5, "2E-12"), (7, "4E-12")])
def test_half_way_rounds_to_even_as_rate_does(tokens, credits):
    rule = RateRule(input_tokens=Decimal("0.0000000000005"))  # each token half a unit of 10^-12
    usage = RateParams("TOKEN_USAGE", AT, input_tokens=tokens, output_tokens=0)
    assert rate_fast(usage, table(rule), None, Decimal("0.01")).credits.as_tuple() == Decimal(credits).as_tuple()
    assert_same(usage, table(rule), None, Decimal("0.01"))


def test_the_default_burn_table_with_any_credit_price_equals_rate():
    price = ProviderPrice("openai", "m", AT, "v1", input_mtok=Decimal("2.5"), output_mtok=Decimal("10"),
                          cache_read_mtok=Decimal("1.25"))
    usage = RateParams("TOKEN_USAGE", AT, input_tokens=123_457, output_tokens=9_876, cached_input_tokens=1_001)
    for credit_price in (Decimal("0.01"), Decimal("0.03"), Decimal("0.07"), Decimal("0.0125")):
        assert_same(usage, derived("cus", price, credit_price, Decimal("0.2")), price, credit_price)


def test_everyday_tables_and_prices_take_the_integer_path(monkeypatch):
    """Without this, the property above would also hold if every event fell back to `rate`."""
    rule = RateRule(per_unit=Decimal(1000), input_tokens=Decimal("2.5"), output_tokens=Decimal(10),
                    cached_input_tokens=Decimal("1.25"), images={"1024x1024:hd": Decimal(80)}, unit=Decimal("0.015"))
    price = ProviderPrice("openai", "m", AT, "v1", input_mtok=Decimal("2.5"), output_mtok=Decimal("10"),
                          cache_read_mtok=Decimal("1.25"), per_image=Decimal("0.04"), per_unit=Decimal("0.006"))
    usages_ = [RateParams("TOKEN_USAGE", AT, "openai", "m", 1000, 500, 200),
               RateParams("IMAGE_GENERATION", AT, "openai", "m", image_count=2, image_size="1024x1024", quality="hd"),
               RateParams("CUSTOM", AT, unit_type="characters", quantity=Decimal("1234.500000000000"))]
    expected = [rate(u, table(rule), price, Decimal("0.01")) for u in usages_]
    monkeypatch.setattr(rating, "rate", lambda *args: pytest.fail("fell back to rate()"))
    assert [rate_fast(u, table(rule), price, Decimal("0.01")) for u in usages_] == expected
    assert derived("cus", price, Decimal("0.01"), Decimal("0.2")).rules["default"].scaled is not None
