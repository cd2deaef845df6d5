"""A usage.rated record built from the event's bytes plus the rating's tail is byte for byte the
record encoded whole: over thousands of random records of the real schemas."""

from __future__ import annotations

from schemas.codec import AvroCodec, schema_text
from stream_processors.codecs import RatedFromEvent
from tests.unit.schemas.test_avro_decoder import records


def test_event_bytes_plus_the_encoded_tail_equal_the_whole_rated_record():
    usage_event, rated = AvroCodec(schema_text("usage_event.avsc"), 11), AvroCodec(schema_text("rated_usage.avsc"), 12)
    build = RatedFromEvent(usage_event, rated, ("wallet_id",))
    event_fields = list(next(records("usage_event.avsc", 1, seed=0)))
    for record in records("rated_usage.avsc", 3000, seed=3):
        event_value = usage_event.encode({name: record[name] for name in event_fields})
        event = {name: record[name] for name in event_fields}
        assert build.encode(event_value, event, {k: v for k, v in record.items() if k not in event}) \
            == rated.encode(record)


def test_an_event_written_with_another_schema_is_encoded_whole():
    usage_event, rated = AvroCodec(schema_text("usage_event.avsc"), 11), AvroCodec(schema_text("rated_usage.avsc"), 12)
    older = AvroCodec(schema_text("usage_event.avsc"), 5)  # another registered id: its body may differ
    build = RatedFromEvent(usage_event, rated)
    record = next(records("rated_usage.avsc", 1, seed=9))
    event = {k: v for k, v in record.items() if k in next(records("usage_event.avsc", 1, seed=0))}
    event_value = older.encode(event)
    assert build.encode(event_value, event, {k: v for k, v in record.items() if k not in event}) == rated.encode(record)


def test_a_debit_decoded_with_only_the_fields_the_wallet_agent_reads_applies_as_the_whole_record():
    from datetime import datetime, timezone

    from stream_processors import wallet_state_codec
    from stream_processors.wallet_step import DEBIT_FIELDS, apply_records

    rated = AvroCodec(schema_text("rated_usage.avsc"), 12)
    debit = rated.projection(DEBIT_FIELDS)
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    for record in records("rated_usage.avsc", 300, seed=5):
        record = {**record, "customer_id": "cus_a", "wallet_id": "w:cus_a:customer", "credits": abs(record["credits"]),
                  "source_offset": (record["source_offset"] or 0) & (2**62 - 1)}
        value = rated.encode(record)
        whole, narrow = (apply_records(None, "w:cus_a:customer", [("debit", r)], policy="allow_overdraft", now=now)
                         for r in (rated.decode(value), debit.decode(value)))
        assert narrow.ledger == whole.ledger
        assert wallet_state_codec.dumps(narrow.state) == wallet_state_codec.dumps(whole.state)
        assert [r["user_id"] for r in narrow.rated] == [r["user_id"] for r in whole.rated]
