"""The entitlement decision without HTTP (api/entitlement_decisions.py), on an in-memory catalog and
balances: feature gating, the estimate's price, and the wallet's available less pending holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from api.entitlement_decisions import assess, gate, new_answer, price
from api.entitlement_requests import Check
from api.errors import ApiError
from api.holds import Hold, Holds
from openmonetize import wallet_ids
from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.billing.rating import RateParams
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import key_of
from openmonetize.catalog.records import BurnTableRecord, TenantSettings
from openmonetize.wallet_balances import Balance

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
WALLET = wallet_ids.user_wallet("cus_a", "u1")


def catalog(**tenant) -> CatalogIndex:
    index = CatalogIndex()
    table = BurnTableRecord(BurnTable("bt_1", "cus_a", "std", 1, NOW - timedelta(days=1), parse_rules(
        {"gpt-4o": {"input_tokens": "2.5", "output_tokens": "10", "per_unit": 1000}})), NOW, NOW)
    for record in (TenantSettings("cus_a", **tenant), table):
        index.apply(key_of(record), record)
    return index


def check(credits: str | None = "10", feature_id: str | None = None, usage: RateParams | None = None) -> Check:
    return Check("cus_a", "u1", None, feature_id, None if credits is None else Decimal(credits), usage, False, 60,
                 None)


def balances(available: str) -> dict[str, Balance]:
    amount = Decimal(available)
    return {WALLET: Balance(WALLET, "cus_a", amount, Decimal(0), amount, (), 3, NOW)}


def decide(index: CatalogIndex, wallets: dict, holds: Holds, check_: Check, reservation_id: str | None = None):
    out = new_answer(index, "cus_a", check_)
    if gate(index, "cus_a", check_, out):
        required = price(index, "cus_a", check_, NOW, out)
        assess(index, wallets, lambda wallet_id: wallet_id in wallets, holds, "cus_a", check_, reservation_id,
               required, NOW, out)
    return out


def test_allowed_when_the_available_covers_the_estimate_else_a_top_up_of_the_difference():
    assert decide(catalog(), balances("10"), Holds(), check("10")).allowed
    out = decide(catalog(), balances("7.5"), Holds(), check("10"))
    assert (out.allowed, out.reason, out.wallet_id) == (False, "insufficient_credits", WALLET)
    assert out.actions[0]["type"] == "top_up" and out.actions[0]["credits"] == "2.5"


def test_pending_holds_of_this_process_count_but_a_retry_of_the_same_hold_does_not():
    holds = Holds()
    holds.add(Hold("res_1", "cus_a", WALLET, Decimal("5"), NOW + timedelta(minutes=1)))
    assert not decide(catalog(), balances("10"), holds, check("6")).allowed
    assert decide(catalog(), balances("10"), holds, check("6"), reservation_id="res_1").allowed


def test_a_usage_estimate_is_priced_with_the_burn_table_in_force():
    usage = RateParams("TOKEN_USAGE", NOW, "openai", "gpt-4o", input_tokens=1000, output_tokens=500)
    out = decide(catalog(), balances("100"), Holds(), check(None, usage=usage))
    assert (out.required, out.rule_key, out.burn_table_version) == ("7.5", "gpt-4o", 1)
    with pytest.raises(ApiError) as refused:
        decide(catalog(), balances("100"), Holds(), check(None, usage=RateParams("TOKEN_USAGE", NOW, "x", "unknown",
                                                                                input_tokens=1)))
    assert refused.value.code == "no_rate"


def test_a_feature_switched_off_for_the_tenant_is_refused_before_any_balance_is_read():
    out = decide(catalog(disabled_features=("images",)), {}, Holds(), check(feature_id="images"))
    assert (out.allowed, out.reason, out.actions[0]["type"]) == (False, "feature_disabled", "contact_admin")
    assert out.wallet_id == ""  # never routed
