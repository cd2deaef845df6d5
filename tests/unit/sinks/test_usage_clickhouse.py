"""The pure parts of the ClickHouse sink: record → row, and the memory that drops copies."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sinks.usage_clickhouse import COLUMNS, RecentEvents, to_row

AT = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def rated(**fields) -> dict:
    record = {
        "event_id": "evt_1", "customer_id": "cus_a", "user_id": "u1", "team_id": None, "event_type": "TOKEN_USAGE",
        "feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
        "cached_input_tokens": None, "image_count": None, "image_size": None, "quality": None, "unit_type": None,
        "quantity": None, "reservation_id": None, "timestamp": AT, "metadata": None, "received_at": None,
        "source": "http", "wallet_id": "w:cus_a:user:u1", "credits": Decimal("3.5"), "usd_cost": Decimal("0.0035"),
        "revenue_usd": Decimal("0.035"), "margin_usd": Decimal("0.0315"), "burn_table_id": "bt_1",
        "burn_table_version": 2, "price_version": "2026-11-01", "rated_at": AT, "revision": 0,
        "source_partition": 1, "source_offset": 7,
    }
    record.update(fields)
    return record


def row(**fields) -> tuple:
    return to_row(rated(**fields), "usage.rated", 3, 42)


def test_a_record_maps_to_a_row_with_empty_strings_and_zeros_for_absent_fields():
    mapped = dict(zip(COLUMNS, row()))
    assert mapped["team_id"] == "" and mapped["cached_input_tokens"] == 0 and mapped["image_size"] == ""
    assert mapped["quantity"] == Decimal(0) and mapped["metadata"] == {} and mapped["received_at"] is None
    assert (mapped["credits"], mapped["burn_table_version"], mapped["price_version"]) == (Decimal("3.5"), 2, "2026-11-01")
    assert (mapped["kafka_topic"], mapped["kafka_partition"], mapped["kafka_offset"]) == ("usage.rated", 3, 42)
    assert len(mapped) == len(COLUMNS)
    with_team = dict(zip(COLUMNS, row(team_id="t1", metadata={"k": "v"}, received_at=AT)))
    assert (with_team["team_id"], with_team["metadata"], with_team["received_at"]) == ("t1", {"k": "v"}, AT)


def test_a_copy_is_dropped_within_a_batch_and_across_batches_but_a_higher_revision_passes():
    recent = RecentEvents(capacity=1000)
    first = [row(event_id="a"), row(event_id="b"), row(event_id="a")]
    fresh = recent.fresh(first)
    assert [r[1] for r in fresh] == ["a", "b"]
    recent.remember((r[0], r[1], r[COLUMNS.index("revision")]) for r in fresh)
    assert recent.fresh([row(event_id="a"), row(event_id="c")]) == [row(event_id="c")]
    assert recent.fresh([row(event_id="a", revision=1)]) == [row(event_id="a", revision=1)]
    assert recent.fresh([row(event_id="a", customer_id="cus_b")]) == [row(event_id="a", customer_id="cus_b")]


def test_the_oldest_are_forgotten_first_and_a_re_stored_event_becomes_the_newest():
    recent = RecentEvents(capacity=3)
    recent.remember([("c", "1", 0), ("c", "2", 0), ("c", "3", 0)])
    recent.remember([("c", "1", 1)])  # 1 again, at a higher revision: now the newest
    recent.remember([("c", "4", 0)])  # 2 goes
    assert len(recent) == 3
    assert [r[1] for r in recent.fresh([row(customer_id="c", event_id=e) for e in "1234"])] == ["2"]
    recent.remember([("c", "4", 0)] * 5)  # an older-or-equal revision changes nothing
    assert len(recent) == 3
