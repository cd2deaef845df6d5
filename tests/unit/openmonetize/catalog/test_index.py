"""The catalog's lookup indexes and rate_event (pure: fed record by record, no Kafka)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmonetize.billing.prices import ProviderPrice
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import key_of
from openmonetize.catalog.records import BurnTableRecord, PriceRecord, TenantSettings
from tests.unit.openmonetize.catalog.records import T0, price, table


def test_a_tenant_without_settings_gets_the_defaults():
    index = CatalogIndex()
    assert index.tenant("cus_a") == TenantSettings("cus_a", Decimal("0.01"), ("user", "team", "customer"))
    index.apply("tenant:cus_a", TenantSettings("cus_a", Decimal("0.02")))
    assert index.tenant("cus_a").credit_price_usd == Decimal("0.02")


def test_the_newest_created_table_with_a_version_in_force_applies():
    index = CatalogIndex()
    for record in (
        table("bt_old", 1, T0, T0),
        table("bt_old", 2, T0 + timedelta(days=10), T0 + timedelta(days=10)),
        table("bt_new", 1, T0 + timedelta(days=20), T0 + timedelta(days=5)),
    ):
        index.apply(key_of(record), record)
    at = index.burn_table_at
    # Before the tenant's first version, that first version: a table created now rates late events.
    assert (at("cus_a", T0 - timedelta(days=30)).burn_table_id, at("cus_a", T0 - timedelta(days=30)).version) == ("bt_old", 1)
    assert (at("cus_a", T0).burn_table_id, at("cus_a", T0).version) == ("bt_old", 1)
    assert (at("cus_a", T0 + timedelta(days=15)).burn_table_id, at("cus_a", T0 + timedelta(days=15)).version) == ("bt_old", 2)
    assert at("cus_a", T0 + timedelta(days=20)).burn_table_id == "bt_new"
    assert at("cus_b", T0 + timedelta(days=20)) is None


def test_a_backdated_version_rebills_and_a_tombstone_removes_it():
    index = CatalogIndex()
    v1, v2 = table("bt", 1, T0, T0), table("bt", 2, T0 - timedelta(days=1), T0 + timedelta(days=1), rate="2")
    index.apply(key_of(v1), v1)
    index.apply(key_of(v2), v2)
    assert index.burn_table_at("cus_a", T0 + timedelta(hours=1)).version == 1  # v1 is later in force
    assert index.burn_table_at("cus_a", T0 - timedelta(hours=1)).version == 2
    index.apply(key_of(v2), None)
    assert index.burn_table_at("cus_a", T0 - timedelta(hours=1)).version == 1  # the first version reaches back
    index.apply(key_of(v1), v1)  # republished (catalog sync): still one version
    assert index.burn_table_at("cus_a", T0).version == 1


def test_override_first_then_dataset_and_the_latest_of_equal_dates_wins():
    index = CatalogIndex()
    for record in (
        price("genai-1", T0),
        price("override-9", T0 + timedelta(days=1), "cus_a", "5"),
        price("override-10", T0 + timedelta(days=1), "cus_a", "6"),
        price("override-1", T0, "cus_other", "7"),
    ):
        index.apply(key_of(record), record)
    # The tenant's first override version reaches back before its effective_from, as a first burn table does.
    before = index.price_record_at("cus_a", "openai", "gpt-4o", T0)
    assert (before.source, before.price.version) == ("override", "override-10")
    assert index.price_record_at("cus_b", "openai", "gpt-4o", T0 - timedelta(days=3)).price.version == "genai-1"
    found = index.price_record_at("cus_a", "openai", "gpt-4o", T0 + timedelta(days=2))
    assert (found.source, found.price.version, found.price.input_mtok) == ("override", "override-10", Decimal("6"))
    assert index.price_at("cus_b", "openai", "gpt-4o", T0 + timedelta(days=2)).version == "genai-1"
    assert index.price_at("cus_a", "openai", "unknown", T0) is None
    assert index.price_at("cus_a", None, None, T0) is None
    listed = index.prices_in_force("cus_a", T0 + timedelta(days=2), provider="openai")
    assert [(r.price.model, r.price.version) for r in listed] == [("gpt-4o", "override-10")]


def test_rate_event_uses_the_tenants_table_else_the_default_derived_from_the_price():
    from openmonetize.billing.rating import NoRate, RateParams

    index = CatalogIndex(default_markup=Decimal("0.5"))
    for record in (price("genai-1", T0, None, "2"), TenantSettings("cus_a"), TenantSettings("cus_b", Decimal("0.02"))):
        index.apply(key_of(record), record)
    usage = RateParams("TOKEN_USAGE", T0 + timedelta(days=1), "openai", "gpt-4o", input_tokens=1_000_000, output_tokens=0)
    rated = index.rate_event("cus_b", usage)  # $2 x 1.5 / $0.02
    assert (rated.result.credits, rated.result.burn_table_id, rated.price.source, rated.credit_price_usd) == (
        Decimal(150), "default", "dataset", Decimal("0.02"))
    own = table("bt_1", 1, T0 + timedelta(days=5), T0 + timedelta(days=5), rate="3")
    index.apply(key_of(own), own)
    assert index.rate_event("cus_a", usage).result.burn_table_id == "bt_1"  # its first version reaches back
    with pytest.raises(NoRate, match="no provider price for openai/unknown"):
        index.rate_event("cus_b", RateParams("TOKEN_USAGE", T0, "openai", "unknown", input_tokens=1, output_tokens=1))


def test_rate_event_remembers_its_lookups_only_for_as_long_as_they_hold():
    """Per tenant and model, between two versions' effective_from; any catalog change forgets."""
    from openmonetize.billing.rating import RateParams, rate

    index = CatalogIndex()
    records = (TenantSettings("cus_a"), price("genai-1", T0), price("genai-2", T0 + timedelta(days=5), input_mtok="2"),
               price("own-1", T0 + timedelta(days=8), "cus_a", input_mtok="3"),
               table("bt_1", 1, T0 + timedelta(days=2), T0, rate="1"), table("bt_1", 2, T0 + timedelta(days=10), T0, rate="2"))
    for record in records:
        index.apply(key_of(record), record)

    def expected(at: datetime):
        usage = RateParams("TOKEN_USAGE", at, "openai", "gpt-4o", input_tokens=1_000_000, output_tokens=0)
        found = index.price_record_at("cus_a", "openai", "gpt-4o", at)
        return rate(usage, index.burn_table_at("cus_a", at), found.price, index.tenant("cus_a").credit_price_usd), found

    for days in (0, 1, 12, 2, 4.99, 5, 9.99, 10, 7, 8, -3, 5, 30):  # the last as below
        at = T0 + timedelta(days=days)
        usage = RateParams("TOKEN_USAGE", at, "openai", "gpt-4o", input_tokens=1_000_000, output_tokens=0)
        rated = index.rate_event("cus_a", usage)
        assert (rated.result, rated.price) == expected(at), days
    changed = (TenantSettings("cus_a", Decimal("0.5")), table("bt_1", 3, T0 + timedelta(days=11), T0, rate="4"))
    for record in changed:
        index.apply(key_of(record), record)
    usage = RateParams("TOKEN_USAGE", T0 + timedelta(days=30), "openai", "gpt-4o", input_tokens=1_000_000, output_tokens=0)
    assert index.rate_event("cus_a", usage).result == expected(T0 + timedelta(days=30))[0]
    assert index.rate_event("cus_a", usage).result.burn_table_version == 3


@pytest.mark.parametrize("provider, model, source", [
    ("openai", "gpt-4-turbo", "dataset"),
    ("OPENAI", "gpt-4-turbo", "dataset"),  # the seed's events.track spelling
    ("OpenAI", "gpt-4-turbo-2024-04-09", "dataset"),  # the dated name OpenAI answers with
    ("azure", "gpt-4-turbo", "dataset"),  # Azure resells OpenAI's models: OpenAI's price
    ("anthropic", "claude-3.5-sonnet", "override"),  # the tenant's override, under the dataset's id
    ("Anthropic", "claude-3-5-sonnet-20241022", "override"),
    ("openai", "gpt-4", None),  # another model
])
def test_a_price_is_found_under_every_spelling_of_its_names(provider, model, source):
    index = CatalogIndex()
    for record in (
        PriceRecord(ProviderPrice("openai", "gpt-4-turbo", T0, "genai-1", input_mtok=Decimal(10))),
        PriceRecord(ProviderPrice("anthropic", "claude-3-5-sonnet", T0, "genai-1", input_mtok=Decimal(3))),
        PriceRecord(ProviderPrice("anthropic", "claude-3-5-sonnet", T0, "override-1", input_mtok=Decimal(2)), "cus_a"),
    ):
        index.apply(key_of(record), record)
    found = index.price_record_at("cus_a", provider, model, T0 + timedelta(days=1))
    assert (found.source if found else None) == source


# Versions in force at different times over 30 days: the burn table (three versions, then a
# newer table), the dataset's price (two) and the tenant's override (one).
STREAM_CATALOG = (
    TenantSettings("cus_a", Decimal("0.02")),
    table("bt_1", 1, T0, T0, rate="1"), table("bt_1", 2, T0 + timedelta(days=6), T0, rate="2"),
    table("bt_1", 3, T0 + timedelta(days=12), T0, rate="3.5"),
    table("bt_2", 1, T0 + timedelta(days=20), T0 + timedelta(days=1), rate="0.25"),
    price("genai-1", T0), price("genai-2", T0 + timedelta(days=9), input_mtok="2"),
    price("own-1", T0 + timedelta(days=15), "cus_a", input_mtok="3"),
)


# Any minute of the 30 days, often right at a version change or a minute either side of one.
_CHANGES = [d * 24 * 60 + step for d in (6, 9, 12, 15, 20) for step in (-1, 0, 1)]
MINUTES = st.one_of(st.integers(0, 30 * 24 * 60), st.sampled_from(_CHANGES))


def stream_index() -> CatalogIndex:
    index = CatalogIndex()
    for record in STREAM_CATALOG:
        index.apply(key_of(record), record)
    return index


def in_force_rating(usage):
    """The reference: `rate` with the versions picked from the records, not from the index."""
    from openmonetize.billing import burn_tables, prices
    from openmonetize.billing.rating import rate

    tables = {}
    for record in STREAM_CATALOG:
        if isinstance(record, BurnTableRecord):
            tables.setdefault((record.table_created_at, record.table.burn_table_id), []).append(record.table)
    newest_first = [tables[key] for key in sorted(tables, reverse=True)]
    table_ = next(filter(None, (burn_tables.in_force(v, usage.timestamp) for v in newest_first)), None)
    overrides = [r.price for r in STREAM_CATALOG if isinstance(r, PriceRecord) and r.customer_id == "cus_a"]
    dataset = [r.price for r in STREAM_CATALOG if isinstance(r, PriceRecord) and r.customer_id is None]
    price_ = prices.in_force(overrides, usage.timestamp) or prices.in_force(dataset, usage.timestamp)
    return rate(usage, table_, price_, Decimal("0.02"))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(MINUTES, st.integers(0, 10**6), st.integers(0, 10**5)),
                min_size=1, max_size=40),
       st.integers(0, 40))
def test_rating_a_stream_in_one_pass_equals_rating_it_in_split_passes(events, cut):
    """What makes a replay safe to split or resume: an event's rating depends on that event and
    the versions in force at its own time, never on the events rated before it by the same
    process. `rate_event` remembers its lookups between events (`_rating_span`); events out of
    time order over many version changes, rated by one index in one pass, by fresh indexes in
    two passes, and by `rate` with the versions picked from the records, must all agree."""
    from openmonetize.billing.rating import RateParams

    usages = [RateParams("TOKEN_USAGE", T0 + timedelta(minutes=minute), "openai", "gpt-4o", input_tokens=i,
                         output_tokens=0, cached_input_tokens=min(c, i)) for minute, i, c in events]
    whole_index = stream_index()
    whole = [whole_index.rate_event("cus_a", u).result for u in usages]
    first, second = stream_index(), stream_index()
    split = [first.rate_event("cus_a", u).result for u in usages[:cut]] + [
        second.rate_event("cus_a", u).result for u in usages[cut:]]
    assert whole == split == [in_force_rating(u) for u in usages]
