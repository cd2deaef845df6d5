"""The usage step without Kafka: every outcome an event can have, dedupe within a batch and
against the table, what a retry may change, routing order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import key_of
from openmonetize.catalog.records import BurnTableRecord, TenantSettings
from openmonetize.usage_step import (
    REASONS,
    Inputs,
    Window,
    body_hash,
    dedupe_key,
    seen_value,
    usage_step,
)
from schemas.codec import AvroCodec, schema_text

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
CODEC = AvroCodec(schema_text("usage_event.avsc"), 1)
WINDOW = Window(timedelta(days=35), timedelta(minutes=5))


def catalog() -> CatalogIndex:
    index = CatalogIndex()
    rules = parse_rules({"gpt-4o": {"input_tokens": "5", "output_tokens": "25", "per_unit": "1000"}})  # 7.5 a call
    for customer in ("cus_a", "cus_t"):
        record = BurnTableRecord(BurnTable("bt_1", customer, "standard", 1, NOW - timedelta(days=10), rules),
                                 NOW - timedelta(days=10), NOW - timedelta(days=10))
        index.apply(key_of(record), record)
    index.apply("tenant:cus_t", TenantSettings("cus_t", Decimal("0.01"), ("team", "customer")))
    return index


def event(event_id: str, customer: str = "cus_a", **fields) -> dict:
    record = {
        "event_id": event_id, "customer_id": customer, "user_id": "u1", "team_id": None, "event_type": "TOKEN_USAGE",
        "feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
        "cached_input_tokens": None, "image_count": None, "image_size": None, "quality": None, "unit_type": None,
        "quantity": None, "reservation_id": None, "timestamp": NOW - timedelta(hours=1), "metadata": None,
        "received_at": NOW, "source": "http",
    }
    record.update(fields)
    return record


def step(*values: bytes, seen: dict | None = None, wallets: frozenset = frozenset()):
    inputs = Inputs(catalog(), wallets.__contains__, lambda partition, keys: [(seen or {}).get((partition, k)) for k in keys])
    return usage_step(((0, v) for v in values), CODEC.decode, inputs, WINDOW, NOW)


def test_every_outcome_with_its_reason_stage_and_detail():
    charged_before = event("e_seen")
    decisions, charged = step(
        CODEC.encode(event("e_ok")),
        b"\x00\x00\x00\x00\x01garbage",
        CODEC.encode(event("e_old", timestamp=NOW - timedelta(days=36))),
        CODEC.encode(event("e_future", timestamp=NOW + timedelta(minutes=6))),
        CODEC.encode(event("e_ok", received_at=NOW + timedelta(seconds=3), source="kafka")),  # a client retry
        CODEC.encode(event("e_ok", input_tokens=2000)),  # the same id, other usage
        CODEC.encode(event("e_x", customer="cus_nobody")),
        CODEC.encode(event("e_y", customer="cus_t", provider="acme", model="no-such-model")),
        CODEC.encode(charged_before),  # charged in an earlier batch: in the table
        seen={(0, dedupe_key("cus_a", "e_seen")): seen_value(charged_before)},
    )
    assert [d.outcome for d in decisions] == [
        "rated", "decode_error", "too_old", "too_new", "duplicate", "conflicting_duplicate", "unknown_customer",
        "no_rate", "duplicate"]
    assert [d.stage for d in decisions[1:4]] == ["decode", "dedupe", "dedupe"]
    assert {d.outcome: d.stage for d in decisions[5:8]} == {
        "conflicting_duplicate": "dedupe", "unknown_customer": "rate", "no_rate": "rate"}
    assert set(REASONS) >= {d.outcome for d in decisions} - {"rated", "duplicate"}
    assert "older than the accepted window (35 days)" in decisions[2].detail
    assert "more than 300 s in the future" in decisions[3].detail
    assert "'e_ok' was already charged with a different body" in decisions[5].detail
    assert "'cus_nobody' is not a tenant" in decisions[6].detail
    assert decisions[1].record is None and decisions[6].record["event_id"] == "e_x"
    rated = decisions[0]
    assert rated.charge["credits"] == Decimal("7.5") and rated.charge["burn_table_id"] == "bt_1"
    assert rated.charge["wallet_id"] == "w:cus_a:customer"  # no user or team wallet exists
    # Only the charge is remembered, once, for the table.
    assert charged == {0: {dedupe_key("cus_a", "e_ok"): seen_value(event("e_ok"))}}


def test_a_bug_parks_that_event_as_processing_error_and_the_batch_goes_on():
    def seen(_partition, keys):
        if dedupe_key("cus_a", "e_bug") in keys:
            raise RuntimeError("table unreadable")
        return [None] * len(keys)

    inputs = Inputs(catalog(), frozenset().__contains__, seen)
    decisions, _ = usage_step([(0, CODEC.encode(event("e_bug"))), (0, CODEC.encode(event("e_fine")))],
                              CODEC.decode, inputs, WINDOW, NOW)
    assert [d.outcome for d in decisions] == ["processing_error", "rated"]
    assert decisions[0].detail == "RuntimeError: table unreadable" and decisions[0].stage == "rate"
    assert isinstance(decisions[0].error, RuntimeError)  # its traceback goes to the agent's log


def test_dedupe_is_per_partition_within_a_batch():
    lookups = []

    def seen(partition, keys):
        lookups.append((partition, len(keys)))
        return [None] * len(keys)

    inputs = Inputs(catalog(), frozenset().__contains__, seen)
    value = CODEC.encode(event("e1"))
    decisions, charged = usage_step([(0, value), (1, value), (0, value)], CODEC.decode, inputs, WINDOW, NOW)
    assert [d.outcome for d in decisions] == ["rated", "rated", "duplicate"]
    assert set(charged) == {0, 1}
    assert sorted(lookups) == [(0, 1), (1, 1)]  # one lookup per partition of the batch, each key once


def test_routing_takes_the_first_existing_wallet_in_the_tenants_order():
    def wallet(wallets: frozenset, customer: str = "cus_a", team: str | None = "t1") -> str:
        decisions, _ = step(CODEC.encode(event("e1", customer=customer, team_id=team)), wallets=wallets)
        return decisions[0].charge["wallet_id"]

    assert wallet(frozenset({"w:cus_a:user:u1", "w:cus_a:team:t1"})) == "w:cus_a:user:u1"
    assert wallet(frozenset({"w:cus_a:team:t1"})) == "w:cus_a:team:t1"
    assert wallet(frozenset()) == "w:cus_a:customer"
    # cus_t routes team first, then the customer: its user wallet is never charged.
    assert wallet(frozenset({"w:cus_t:user:u1", "w:cus_t:team:t1"}), customer="cus_t") == "w:cus_t:team:t1"
    assert wallet(frozenset({"w:cus_t:user:u1"}), customer="cus_t", team=None) == "w:cus_t:customer"


def test_a_retry_through_another_path_or_later_has_the_same_body_and_other_usage_another():
    first = event("e1", quantity=Decimal("1.5"), metadata={"a": "b"})
    assert body_hash({**first, "received_at": NOW + timedelta(days=1), "source": "kafka"}) == body_hash(first)
    assert body_hash({**first, "input_tokens": 1001}) != body_hash(first)
    assert body_hash({**first, "quantity": Decimal("1.50000001")}) != body_hash(first)


def test_the_body_hash_is_the_one_the_dedupe_tables_already_hold():
    # Stored in `usage-seen` and compared with every later copy: a change would let a retry that
    # spans an upgrade be charged twice. These are the values of the first definition.
    assert body_hash(event("e1", quantity=Decimal("1.5"), metadata={"a": "b"})).hex() == "c9676022364e386b"
    assert body_hash(event("e2")).hex() == "dcd582fc8738f1f1"


def test_dedupe_keys_are_per_tenant_and_compact():
    assert dedupe_key("c1", "e1") != dedupe_key("c2", "e1")
    assert dedupe_key("c1", "e1:x") != dedupe_key("c1:e1", "x")  # a separator no id can fake
    assert len(dedupe_key("c1", "e1")) == 16 and len(seen_value(event("e1"))) == 12


def test_a_batch_routes_each_user_once():
    asked = []

    def exists(wallet_id):
        asked.append(wallet_id)
        return wallet_id == "w:cus_a:team:t1"

    inputs = Inputs(catalog(), exists, lambda partition, keys: [None] * len(keys))
    values = [CODEC.encode(event(f"e{i}", team_id="t1")) for i in range(3)]
    decisions, _ = usage_step(((0, v) for v in values), CODEC.decode, inputs, WINDOW, NOW)
    assert [d.charge["wallet_id"] for d in decisions] == ["w:cus_a:team:t1"] * 3
    assert asked == ["w:cus_a:user:u1", "w:cus_a:team:t1"]  # the first event's routing, remembered for the batch
