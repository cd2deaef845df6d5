"""The pure parts of the ClickHouse sink: record → row, and the memory that drops copies."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sinks.usage_clickhouse import COLUMNS, PartitionMemory, RecentEvents, fresh_rows, to_row

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


def row(offset: int = 42, partition: int = 3, **fields) -> tuple:
    return to_row(rated(**fields), "usage.rated", partition, offset)


REVISION = COLUMNS.index("revision")


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
    memories = {3: PartitionMemory(capacity=1000)}
    first = [row(1, event_id="a"), row(2, event_id="b"), row(3, event_id="a")]
    fresh = fresh_rows(memories, first)
    assert [r[1] for r in fresh] == ["a", "b"]
    memories[3].recent.remember((r[0], r[1], r[REVISION]) for r in fresh)
    assert fresh_rows(memories, [row(4, event_id="a"), row(5, event_id="c")]) == [row(5, event_id="c")]
    assert fresh_rows(memories, [row(6, event_id="a", revision=1)]) == [row(6, event_id="a", revision=1)]
    assert fresh_rows(memories, [row(7, event_id="a", customer_id="cus_b")]) == [row(7, event_id="a", customer_id="cus_b")]


def test_offsets_clickhouse_holds_are_skipped_however_many_each_once_and_only_on_their_partition():
    """A sink that lost its commits reads again far more records than it remembers events: the
    stored offsets, not the bounded memory of events, decide."""
    memories = {0: PartitionMemory(capacity=1000, stored_offsets=range(100, 5100)), 1: PartitionMemory(capacity=1000)}
    again = [row(o, partition=0, event_id=f"e{o}") for o in range(100, 5100)]
    assert fresh_rows(memories, again) == []
    assert memories[0].stored_offsets == set()
    beyond = [row(5100, partition=0, event_id="new"), row(100, partition=1, event_id="e100")]
    assert fresh_rows(memories, beyond) == beyond


def test_the_oldest_are_forgotten_first_and_a_re_stored_event_becomes_the_newest():
    recent = RecentEvents(capacity=3)
    recent.remember([("c", "1", 0), ("c", "2", 0), ("c", "3", 0)])
    recent.remember([("c", "1", 1)])  # 1 again, at a higher revision: now the newest
    recent.remember([("c", "4", 0)])  # 2 goes
    assert len(recent) == 3
    memories = {3: PartitionMemory(capacity=3)}
    memories[3].recent = recent
    assert [r[1] for r in fresh_rows(memories, [row(customer_id="c", event_id=e) for e in "1234"])] == ["2"]
    recent.remember([("c", "4", 0)] * 5)  # an older-or-equal revision changes nothing
    assert len(recent) == 3
