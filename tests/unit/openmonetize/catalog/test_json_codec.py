"""Catalog records as the billing.catalog topic carries them: exact round trips, plain strings."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.catalog.json_codec import decode, encode, key_of, rules_json
from openmonetize.catalog.records import BurnTableRecord, TenantSettings
from tests.unit.openmonetize.catalog.records import RULES, T0, price


def test_records_round_trip_exactly():
    records = [
        TenantSettings("cus_a", Decimal("0.012345678901"), ("team", "user"), "reject"),
        BurnTableRecord(BurnTable("bt_1", "cus_a", "std", 3, T0, parse_rules(RULES)), T0 + timedelta(days=1), T0),
        price("genai-1", T0, None, "2.500000000000"),
        price("override-2", T0 + timedelta(hours=1, microseconds=5), "cus_a", "123456789012345678901234.5"),
    ]
    for record in records:
        assert decode(encode(record)) == record
    assert key_of(records[1]) == "burn_table:cus_a:bt_1:3"
    assert key_of(records[2]) == "price:openai:gpt-4o:genai-1"
    assert key_of(records[3]) == "price_override:cus_a:openai:gpt-4o:override-2"


def test_amounts_are_plain_decimal_strings_and_times_rfc3339():
    assert rules_json(parse_rules(RULES)) == {
        "gpt-4o": {"per_unit": "1000", "input_tokens": "2.5", "output_tokens": "10"},
        "dall-e-3": {"per_unit": "1", "image": "4", "images": {"1024x1024:hd": "0.000000000001"}},
    }
    assert b'"input_mtok":"2.5"' in encode(price("v", T0, None, "2.500000000000"))
    assert b'"effective_from":"2026-01-01T00:00:00+00:00"' in encode(price("v", T0))
