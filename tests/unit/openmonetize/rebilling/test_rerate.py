"""One partition's replay pass without Kafka: selection, dedupe, re-rating and the comparison
with what the ledger charged."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from openmonetize import wallet_ids
from openmonetize.billing.burn_tables import BurnTable, parse_rules
from openmonetize.catalog.index import CatalogIndex
from openmonetize.catalog.json_codec import key_of
from openmonetize.catalog.records import BurnTableRecord
from openmonetize.rebilling.rerate import Adjustment, Charged, Rates, Rerater, Selection
from schemas.codec import AvroCodec, schema_text

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
CODEC = AvroCodec(schema_text("usage_event.avsc"), 1)
V1 = parse_rules({"gpt-4o": {"input_tokens": "5", "output_tokens": "25", "per_unit": "1000"}})  # 7.5
V2 = parse_rules({"gpt-4o": {"input_tokens": "7.5", "output_tokens": "25", "per_unit": "1000"}})  # 10


def catalog(*versions: dict) -> tuple[CatalogIndex, dict]:
    index, by_version = CatalogIndex(), {}
    for n, rules in enumerate(versions, 1):
        table = BurnTable("bt_1", "cus_a", "standard", n, NOW - timedelta(days=10), rules)
        record = BurnTableRecord(table, NOW - timedelta(days=10), NOW - timedelta(days=10))
        index.apply(key_of(record), record)
        by_version[("bt_1", n)] = table
    return index, by_version


def event(event_id: str, user: str = "u1", customer: str = "cus_a", **fields) -> dict:
    record = {
        "event_id": event_id, "customer_id": customer, "user_id": user, "team_id": None, "event_type": "TOKEN_USAGE",
        "feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
        "cached_input_tokens": None, "image_count": None, "image_size": None, "quality": None, "unit_type": None,
        "quantity": None, "reservation_id": None, "timestamp": NOW - timedelta(hours=1), "metadata": None,
        "received_at": NOW, "source": "kafka",
    }
    record.update(fields)
    return record


def rerater(charged: dict, version: int | None = None, users: frozenset = frozenset(), **options) -> Rerater:
    index, versions = catalog(V1, V2)
    selection = Selection("cus_a", NOW - timedelta(days=1), NOW, users)
    return Rerater(0, selection, CODEC.decode, Rates(index, "cus_a", versions, version), charged, "rr_1", **options)


def feed(r: Rerater, *records: dict) -> None:
    for record in records:
        r.feed(f"{record['customer_id']}:{record['user_id']}".encode(), CODEC.encode(record))


def wallet(user: str = "u1") -> str:
    return wallet_ids.user_wallet("cus_a", user)


def test_each_charged_event_is_re_rated_and_the_difference_is_an_extra_debit():
    r = rerater({"e1": Charged(wallet(), Decimal("7.5")), "e2": Charged(wallet(), Decimal("7.5"))})
    feed(r, event("e1"), event("e2"))
    totals = r.outcome.users["u1"]
    assert (totals.events, totals.adjusted, totals.charged, totals.rerated) == (2, 2, Decimal(15), Decimal(20))
    assert [(a.event_id, a.wallet_id, a.amount, a.kind) for a in r.outcome.adjustments] == [
        ("e1", wallet(), Decimal("-2.5"), "adjustment_debit"), ("e2", wallet(), Decimal("-2.5"), "adjustment_debit")]


def test_a_named_version_rates_instead_of_the_one_in_force_and_may_credit_back():
    r = rerater({"e1": Charged(wallet(), Decimal("10"))}, version=1)
    feed(r, event("e1"))
    [adjustment] = r.outcome.adjustments
    assert (adjustment.amount, adjustment.kind) == (Decimal("2.5"), "adjustment_credit")


def test_what_is_already_booked_is_not_booked_again_and_a_further_change_gets_a_new_command():
    settled = rerater({"e1": Charged(wallet(), Decimal("7.5"), booked=Decimal("2.5"), booked_count=1)})
    feed(settled, event("e1"))
    assert settled.outcome.adjustments == [] and settled.outcome.users["u1"].adjusted == 1
    changed = rerater({"e1": Charged(wallet(), Decimal("7.5"), booked=Decimal("1"), booked_count=1)})
    feed(changed, event("e1"))
    [again] = changed.outcome.adjustments
    first = Adjustment("rr_1", "cus_a", "e1", wallet(), "u1", Decimal("-1"), 0)
    assert again.amount == Decimal("-1.5") and again.command_id != first.command_id


def test_copies_count_once_and_a_copy_with_another_body_is_a_conflict():
    r = rerater({"e1": Charged(wallet(), Decimal("7.5"))})
    original = event("e1")
    feed(r, original, {**original, "received_at": NOW + timedelta(seconds=5), "source": "http"},
         {**original, "output_tokens": 999})
    totals = r.outcome.users["u1"]
    assert (totals.events, totals.duplicates, totals.conflicts, len(r.outcome.adjustments)) == (1, 1, 1, 1)


def test_other_tenants_other_users_and_events_outside_the_range_are_left_alone():
    r = rerater({"e1": Charged(wallet(), Decimal("7.5"))}, users=frozenset({"u1"}))
    feed(r, event("x1", customer="cus_b"), event("x2", user="u2"), event("x3", timestamp=NOW - timedelta(days=2)),
         event("x4", timestamp=NOW), event("e1"))
    assert r.outcome.read == 5 and list(r.outcome.users) == ["u1"] and r.outcome.users["u1"].events == 1


def test_uncharged_and_unrateable_events_book_nothing():
    r = rerater({"e2": Charged(wallet(), Decimal("1"))})
    feed(r, event("e1"), event("e2", model="unknown-model"))
    totals = r.outcome.users["u1"]
    assert (totals.events, totals.uncharged, totals.unrateable, r.outcome.adjustments) == (2, 1, 1, [])


def test_an_event_id_charged_on_two_wallets_is_matched_to_this_records_wallet():
    charged = {"e1": (Charged(wallet("u2"), Decimal("7.5")), Charged(wallet("u1"), Decimal("5")))}
    r = rerater(charged)
    feed(r, event("e1"))
    assert [(a.wallet_id, a.amount) for a in r.outcome.adjustments] == [(wallet("u1"), Decimal("-5"))]


def test_a_dry_run_keeps_totals_only_and_rebuild_keeps_each_rating():
    dry = rerater({"e1": Charged(wallet(), Decimal("7.5"))}, keep_adjustments=False)
    feed(dry, event("e1"))
    assert dry.outcome.adjustments == [] and dry.outcome.users["u1"].rerated == Decimal(10)
    rebuild = rerater({"e1": Charged(wallet(), Decimal("7.5"))}, keep_ratings=True)
    feed(rebuild, event("e1"))
    assert (rebuild.outcome.rerated["e1"].credits, rebuild.outcome.rerated["e1"].burn_table_version) == (Decimal(10), 2)


@pytest.mark.parametrize("user_ids", [frozenset(), frozenset({"u1", "u:2"})])
def test_the_key_filter_matches_the_tenants_keys_only(user_ids):
    wanted = Selection("cus_a", NOW, NOW, user_ids).key_filter()
    assert wanted(b"cus_a:u1") and not wanted(b"cus_ab:u1") and not wanted(None)
    assert wanted(b"cus_a:u3") == (not user_ids)


def _books(charged: dict, records: list[dict], start: datetime, end: datetime) -> dict[str, Decimal]:
    index, versions = catalog(V1, V2)
    r = Rerater(0, Selection("cus_a", start, end), CODEC.decode, Rates(index, "cus_a", versions, None), charged, "rr")
    feed(r, *records)
    return {a.event_id: a.amount for a in r.outcome.adjustments}


def _stream(draw_ids, draw_tokens, draw_minutes) -> list[dict]:
    return [event(f"e{i}", input_tokens=tokens, output_tokens=tokens // 3, timestamp=NOW - timedelta(minutes=minutes))
            for i, tokens, minutes in zip(draw_ids, draw_tokens, draw_minutes)]


@hypothesis_settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_pass_books_what_split_passes_book_and_a_second_pass_books_nothing(data):
    """What makes replays safe to split, repeat and resume: per event, against the ledger."""
    n = data.draw(st.integers(1, 30))
    ids = data.draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))  # repeats: client retries
    tokens = data.draw(st.lists(st.integers(1, 50_000), min_size=n, max_size=n))
    minutes = data.draw(st.lists(st.integers(1, 600), min_size=n, max_size=n))
    records = _stream(ids, tokens, minutes)
    charged = {r["event_id"]: Charged(wallet(), Decimal(data.draw(st.integers(0, 400))) / 4) for r in records}
    start, end = NOW - timedelta(hours=11), NOW
    split = NOW - timedelta(minutes=data.draw(st.integers(0, 660)))

    whole = _books(charged, records, start, end)
    halves = {**_books(charged, records, start, split), **_books(charged, records, split, end)}
    assert halves == whole

    booked = {e: c._replace(before=c.before - whole.get(e, 0)) for e, c in charged.items()}  # the ledger after it
    assert _books(booked, records, start, end) == {}
