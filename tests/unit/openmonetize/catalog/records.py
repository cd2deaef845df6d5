"""Catalog records the catalog tests build."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.billing.prices import ProviderPrice
from openmonetize.catalog.records import BurnTableRecord, PriceRecord

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RULES = {"gpt-4o": {"input_tokens": Decimal("2.5"), "output_tokens": "10.000", "per_unit": 1000},
         "dall-e-3": {"images": {"1024x1024:hd": "0.000000000001"}, "image": "4"}}


def table(table_id: str, version: int, effective: datetime, created: datetime, rate: str = "1") -> BurnTableRecord:
    rules = parse_rules({"default": {"input_tokens": rate}})
    return BurnTableRecord(BurnTable(table_id, "cus_a", "std", version, effective, rules), created, created)


def price(version: str, effective: datetime, customer_id: str | None = None, input_mtok: str = "1") -> PriceRecord:
    return PriceRecord(ProviderPrice("openai", "gpt-4o", effective, version, input_mtok=Decimal(input_mtok)), customer_id)
