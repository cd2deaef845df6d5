"""The pure parts of the ClickHouse sink: record → row and container, and the memory that drops copies."""

from __future__ import annotations

import io
import struct
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import fastavro
import pytest

from schemas.avro_container import ContainerWriter
from schemas.avro_encoder import zigzag_long
from schemas.codec import AvroCodec, schema_text
from sinks.usage_clickhouse import (
    COLUMNS, DATA_ERROR_CODES, POSITION_FIELDS, PartitionMemory, RecentEvents, RowReader, error_code, fresh_rows,
)

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
    record = rated(**fields)
    return (record["customer_id"], record["event_id"], record["revision"], partition, offset, b"body")


REVISION = 2


def codec() -> AvroCodec:
    return AvroCodec(schema_text("rated_usage.avsc"), 7)


def test_a_record_becomes_a_row_of_its_memory_fields_and_its_body_and_a_container_ClickHouse_can_read():
    c = codec()
    value = c.encode(rated(team_id="t1", metadata={"k": "v"}, received_at=AT, quantity=Decimal("2.5")))
    reader = RowReader(c)
    got, fields = reader.row(value, 3, 42)
    assert got == ("cus_a", "evt_1", 0, 3, 42, value[5:])  # the body as it came: nothing re-encoded
    assert (fields["customer_id"], fields["event_id"]) == ("cus_a", "evt_1")

    writer = ContainerWriter(c.raw_schema, POSITION_FIELDS)
    topic = b"usage.rated"
    body = got[5] + zigzag_long(len(topic)) + topic + zigzag_long(3) + zigzag_long(42)
    read_back = list(fastavro.reader(io.BytesIO(writer.container([body, body], 2))))
    assert len(read_back) == 2
    assert read_back[0] == {**rated(team_id="t1", metadata={"k": "v"}, received_at=AT, quantity=Decimal("2.5")),
                            "kafka_topic": "usage.rated", "kafka_partition": 3, "kafka_offset": 42}
    assert set(COLUMNS) <= set(read_back[0])  # every column has its field, by name


def test_a_record_of_another_writer_schema_is_encoded_again_in_ours_and_one_that_does_not_decode_raises():
    ours = codec()
    resolver = SimpleNamespace(schema_by_id=lambda schema_id: schema_text("rated_usage.avsc"))
    reading = AvroCodec(schema_text("rated_usage.avsc"), 7, resolver)
    written_as_9 = struct.pack(">bI", 0, 9) + ours.encode(rated())[5:]
    got, fields = RowReader(reading).row(written_as_9, 0, 1)
    assert got[5] == ours.encode(rated())[5:] and fields["event_id"] == "evt_1"
    with pytest.raises(ValueError):  # DecodeError: a trailing byte
        RowReader(ours).row(ours.encode(rated()) + b"\x00", 0, 1)


def test_clickhouse_errors_about_data_refuse_the_rows_and_others_mean_the_server_is_away():
    assert error_code(Exception("HTTPDriver ... Code: 117. DB::Exception: Incorrect data")) == 117
    assert error_code(Exception("connection refused")) is None
    assert 117 in DATA_ERROR_CODES and 210 not in DATA_ERROR_CODES  # 210: NETWORK_ERROR


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
