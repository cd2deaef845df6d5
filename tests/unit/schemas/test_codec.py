"""Confluent-framed Avro: what we write, any stock client can read, and what they write, we read."""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.codec import AVRO_DIR, AvroCodec, DecodeError, schema_json

EVENT = {
    "event_id": "e1", "customer_id": "cus_a", "user_id": "u1", "team_id": "t1", "event_type": "CUSTOM",
    "feature_id": "f", "provider": None, "model": None, "input_tokens": None, "output_tokens": None,
    "cached_input_tokens": None, "image_count": None, "image_size": None, "quality": None,
    "unit_type": "requests", "quantity": Decimal("12345678901234567890.123456789012"), "reservation_id": None,
    "timestamp": datetime(2026, 11, 26, 11, 59, 0, 123456, tzinfo=timezone.utc), "metadata": {"k": "v"},
    "received_at": datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc), "source": "http",
}


class Registry:
    def __init__(self, schemas: dict[int, str]):
        self.schemas = schemas

    def schema_by_id(self, schema_id: int) -> str:
        return self.schemas[schema_id]


def test_every_topic_schema_parses():
    for path in AVRO_DIR.glob("*.avsc"):
        parse_schema(json.loads(path.read_text()))


def test_round_trip_and_framing():
    codec = AvroCodec(schema_json("usage_event.avsc"), 42)
    data = codec.encode(EVENT)
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == 42
    assert codec.decode(data) == EVENT
    # The body is plain schemaless Avro: a stock reader with the same schema agrees.
    assert schemaless_reader(io.BytesIO(data[5:]), parse_schema(schema_json("usage_event.avsc"))) == EVENT


def test_records_of_an_older_schema_version_decode_into_the_current_one():
    old = schema_json("usage_event.avsc")
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("reservation_id", "source")]
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(old), {k: v for k, v in EVENT.items() if k in {f["name"] for f in old["fields"]}})
    data = struct.pack(">bI", 0, 7) + body.getvalue()
    codec = AvroCodec(schema_json("usage_event.avsc"), 42, Registry({7: json.dumps(old)}))
    decoded = codec.decode(data)
    assert decoded["source"] == "kafka" and decoded["reservation_id"] is None  # the reader's defaults
    assert decoded["quantity"] == EVENT["quantity"]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00", "shorter than the 5-byte"),
        (b"\x01\x00\x00\x00\x2a" + b"\x00", "magic byte is 1"),
        (b"\x00\x00\x00\x00\x2b" + b"\x00", "schema id 43 is not ours"),
        (b"\x00\x00\x00\x00\x2a" + b"\x02", "does not decode"),
    ],
)
def test_undecodable_records_say_why(data, message):
    with pytest.raises(DecodeError, match=message):
        AvroCodec(schema_json("usage_event.avsc"), 42).decode(data)


def test_trailing_bytes_are_refused():
    codec = AvroCodec(schema_json("usage_event.avsc"), 42)
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(codec.encode(EVENT) + b"\x00")


class CountingRegistry(Registry):
    def __init__(self, schemas: dict[int, str]):
        super().__init__(schemas)
        self.asked: list[int] = []

    def schema_by_id(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        return super().schema_by_id(schema_id)


def test_a_reader_that_started_before_the_schema_was_registered_reads_it_as_its_own():
    """reader_codec knows our schema by id 0 when the subject does not hold it yet (a sink that
    started before any worker registered it). Records then written under the registered id are
    ours: the first is resolved (the registry asked once), the rest read by the compiled decoder."""
    registry = CountingRegistry({9: json.dumps(schema_json("usage_event.avsc"), indent=1)})
    reader = AvroCodec(schema_json("usage_event.avsc"), 0, registry)
    written = AvroCodec(schema_json("usage_event.avsc"), 9).encode(EVENT)
    assert written[:5] not in reader.own_headers
    assert [reader.decode(written) for _ in range(3)] == [EVENT] * 3
    assert written[:5] in reader.own_headers
    assert reader.projection(("event_id", "quantity")).decode(written) == {
        "event_id": "e1", "quantity": EVENT["quantity"]}
    assert registry.asked == [9]
    with pytest.raises(DecodeError, match="schema id 10 could not be resolved"):
        reader.decode(b"\x00\x00\x00\x00\x0a" + written[5:])  # an id the registry does not have


def test_another_schema_under_another_id_is_not_read_as_ours():
    old = schema_json("usage_event.avsc")
    old["fields"] = [f for f in old["fields"] if f["name"] != "source"]
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(old), {k: v for k, v in EVENT.items() if k != "source"})
    reader = AvroCodec(schema_json("usage_event.avsc"), 0, Registry({7: json.dumps(old)}))
    data = struct.pack(">bI", 0, 7) + body.getvalue()
    assert reader.decode(data)["source"] == "kafka"  # resolved: the reader's default
    assert data[:5] not in reader.own_headers
