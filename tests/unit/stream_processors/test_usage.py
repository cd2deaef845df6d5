"""The usage agent's pure parts: dedupe identity, what a retry may change, routing order."""

from datetime import datetime, timezone
from decimal import Decimal

from stream_processors.usage import UsageAgent, body_hash, dedupe_key, seen_value

EVENT = {
    "event_id": "e1", "customer_id": "c1", "user_id": "u1", "team_id": None, "event_type": "TOKEN_USAGE",
    "model": "gpt-4o", "input_tokens": 10, "quantity": Decimal("1.5"), "metadata": {"a": "b"},
    "timestamp": datetime(2026, 11, 1, tzinfo=timezone.utc), "received_at": datetime(2026, 11, 1, 0, 0, 1, tzinfo=timezone.utc),
    "source": "http",
}


def test_a_retry_through_another_path_or_later_has_the_same_body():
    retry = {**EVENT, "received_at": datetime(2026, 11, 2, tzinfo=timezone.utc), "source": "kafka"}
    assert body_hash(retry) == body_hash(EVENT)


def test_other_usage_under_the_same_id_has_another_body():
    assert body_hash({**EVENT, "input_tokens": 11}) != body_hash(EVENT)
    assert body_hash({**EVENT, "quantity": Decimal("1.50000001")}) != body_hash(EVENT)


def test_dedupe_keys_are_per_tenant_and_compact():
    assert dedupe_key("c1", "e1") != dedupe_key("c2", "e1")
    assert dedupe_key("c1", "e1:x") != dedupe_key("c1:e1", "x")  # a separator no id can fake
    assert len(dedupe_key("c1", "e1")) == 16 and len(seen_value(EVENT)) == 12


def route(existing: set[str], order=("user", "team", "customer"), team="t1"):
    agent = UsageAgent.__new__(UsageAgent)
    agent.wallet_exists = existing.__contains__
    return agent.route("c1", "u1", team, order)


def test_routing_takes_the_first_existing_wallet_in_the_tenants_order():
    assert route({"w:c1:user:u1", "w:c1:team:t1"}) == "w:c1:user:u1"
    assert route({"w:c1:team:t1"}) == "w:c1:team:t1"
    assert route(set()) == "w:c1:customer"
    assert route({"w:c1:user:u1", "w:c1:team:t1"}, order=("team", "user", "customer")) == "w:c1:team:t1"
    assert route(set(), order=("user",)) == "w:c1:user:u1"  # the customer wallet is not in this tenant's order
    assert route(set(), order=("team",), team=None) == "w:c1:customer"  # no level of the order applies
