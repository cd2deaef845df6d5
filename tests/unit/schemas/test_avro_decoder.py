"""The compiled decoder reads exactly what fastavro reads (fastavro is the reference), for every
schema of ours it accepts, over random records and over corrupted bodies: each test runs with
both backends (the generated Python and the native decoder, the `avro_backend` fixture)."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import avro_decoder
from schemas.avro_decoder import compile_decoder
from schemas.codec import AvroCodec, DecodeError, schema_json
from schemas.avro_encoder import zigzag_long
from tests.unit.schemas.test_avro_encoder import rand_int, rand_long, rand_str

pytestmark = pytest.mark.usefixtures("avro_backend")

COMPILED = ["usage_event.avsc", "rated_usage.avsc", "ledger_entry.avsc", "wallet_command.avsc", "dlq_record.avsc"]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def rand_value(rng: random.Random, schema):
    if isinstance(schema, list):
        return None if rng.random() < 0.3 else rand_value(rng, schema[1])
    if isinstance(schema, str):
        schema = {"type": schema}
    kind, logical = schema["type"], schema.get("logicalType")
    if logical == "timestamp-micros":
        return EPOCH + timedelta(microseconds=rng.choice((0, 1, -1, rng.randrange(0, 2**52), 1_795_000_000_000_000,
                                                          2**55, 2**56, -(2**55), 200 * 2**40)))
    if logical == "decimal":
        digits = rng.randrange(0, schema["precision"] - schema["scale"])
        return Decimal(rng.randrange(-(10**digits), 10**digits + 1)).scaleb(-rng.randrange(0, schema["scale"] + 1))
    if kind == "string":
        return rand_str(rng)
    if kind == "bytes":
        return rng.randbytes(rng.choice((0, 1, 100)))
    if kind == "long":
        return rand_long(rng)
    if kind == "int":
        return rand_int(rng)
    if kind == "map":
        return {rand_str(rng, 8): rand_str(rng) for _ in range(rng.choice((0, 1, 3)))}
    if kind == "array":
        return [rand_value(rng, schema["items"]) for _ in range(rng.choice((0, 1, 3, 70)))]
    if kind == "record":
        return {field["name"]: rand_value(rng, field["type"]) for field in schema["fields"]}
    raise AssertionError(f"no generator for {schema}")


def records(name: str, count: int, seed: int):
    raw = schema_json(name)
    rng = random.Random(seed)
    for _ in range(count):
        yield {field["name"]: rand_value(rng, field["type"]) for field in raw["fields"]}


def body(parsed, record: dict) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parsed, record)
    return out.getvalue()


def reference(parsed, data: bytes):
    """fastavro's record, or None when it fails or does not end at the end of the body."""
    buffer = io.BytesIO(data)
    try:
        record = schemaless_reader(buffer, parsed, None)
    except Exception:  # noqa: BLE001 - any failure
        return None
    return record if buffer.tell() == len(data) else None


def test_the_backend_is_the_one_asked_for(avro_backend):
    fast = compile_decoder(schema_json("usage_event.avsc"))
    assert (type(fast).__name__ == "Decoder") == (avro_backend == "native")
    assert avro_decoder.native_available() == (avro_backend == "native")


@pytest.mark.parametrize("name", COMPILED)
def test_random_records_decode_exactly_as_fastavro_reads_them(name):
    parsed = parse_schema(schema_json(name))
    fast = compile_decoder(schema_json(name), cached_fields=("customer_id", "provider", "model"))
    assert fast is not None
    for record in records(name, 1500, seed=hash(name) & 0xFFFF):
        data = b"\x00\x00\x00\x00\x07" + body(parsed, record)
        decoded, end = fast(data, 5)
        assert end == len(data)
        assert decoded == reference(parsed, data[5:]) == record
        assert [type(v) for v in decoded.values()] == [type(v) for v in record.values()]


def corrupted_reads(parsed, fast, records, rng):
    """(what fastavro reads, what `fast` read) for each corrupted body (cut short, a byte more, a
    bit flipped) that `fast` read to its end without giving up."""
    for record in records:
        good = body(parsed, record)
        for mutated in (good[: rng.randrange(0, len(good))], good + b"\x00",
                        bytes(b ^ (1 << rng.randrange(8)) if i == rng.randrange(len(good)) else b
                              for i, b in enumerate(good))):
            expected = reference(parsed, mutated)
            try:
                decoded, end = fast(mutated, 0)
            except Exception:  # noqa: BLE001 - the fast path gives up; the codec asks fastavro
                continue
            if end == len(mutated):
                yield expected, decoded


@pytest.mark.parametrize("name", COMPILED)
def test_a_corrupted_body_is_never_read_differently_from_fastavro(name):
    parsed = parse_schema(schema_json(name))
    fast = compile_decoder(schema_json(name))
    for expected, decoded in corrupted_reads(parsed, fast, records(name, 400, seed=3), random.Random(7)):
        assert decoded == expected


def test_the_codec_still_raises_decode_error_on_corrupt_input():
    codec = AvroCodec(schema_json("rated_usage.avsc"), 7)
    good = codec.encode(next(records("rated_usage.avsc", 1, seed=1)))
    with pytest.raises(DecodeError, match="does not decode|trailing"):
        codec.decode(good[:-3])
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(good + b"\x00")


def test_schemas_it_does_not_handle_are_left_to_fastavro():
    assert compile_decoder(schema_json("wallet_balance.avsc")) is None  # arrays of records
    assert compile_decoder({"type": "record", "name": "x", "fields": [{"name": "f", "type": "double"}]}) is None


FEW = ("event_id", "customer_id", "team_id", "quantity", "metadata", "timestamp", "wallet_id", "credits",
       "source_offset")


def test_a_projection_reads_its_fields_as_the_whole_record_has_them():
    codec = AvroCodec(schema_json("rated_usage.avsc"), 7, cached_fields=("customer_id", "wallet_id"))
    projection = codec.projection(FEW)
    for record in records("rated_usage.avsc", 1500, seed=11):
        assert projection.decode(codec.encode(record)) == {name: record[name] for name in FEW}


def test_a_projection_of_a_corrupted_body_reads_what_fastavro_reads_or_gives_up():
    parsed = parse_schema(schema_json("rated_usage.avsc"))
    fast = compile_decoder(schema_json("rated_usage.avsc"), only=FEW)
    for expected, decoded in corrupted_reads(parsed, fast, records("rated_usage.avsc", 400, seed=4), random.Random(5)):
        if expected is not None:  # it does not check skipped UTF-8
            assert decoded == {name: expected[name] for name in FEW}


def test_a_projection_of_another_writer_schema_or_a_corrupt_record_decodes_it_whole():
    schema = schema_json("rated_usage.avsc")
    older = {**schema, "fields": [f for f in schema["fields"] if f["name"] != "source_offset"]}

    class Registry:
        def schema_by_id(self, schema_id):
            return json.dumps(older)

    projection = AvroCodec(schema, 1, Registry()).projection(("event_id", "source_offset"))
    record = next(records("rated_usage.avsc", 1, seed=2))
    assert projection.decode(AvroCodec(older, 9).encode(record)) == {"event_id": record["event_id"],
                                                                      "source_offset": None}
    with pytest.raises(DecodeError):
        projection.decode(AvroCodec(schema, 1).encode(record)[:-3])


ROW_FIELDS = ("event_id", "customer_id", "team_id", "image_count", "quantity", "timestamp")  # not: metadata, source...


def row(*values):
    return values


def micros(at):
    return None if at is None else (at - EPOCH) // timedelta(microseconds=1)


def test_rows_hold_the_fields_as_the_whole_record_has_them_timestamps_in_microseconds():
    codec = AvroCodec(schema_json("usage_event.avsc"), 7, cached_fields=("customer_id",))
    rows = codec.rows(ROW_FIELDS, row)
    for record in records("usage_event.avsc", 1500, seed=12):
        assert rows.decode(codec.encode(record)) == tuple(
            micros(record[name]) if name == "timestamp" else record[name] for name in ROW_FIELDS)


def outcome(decode, data):
    try:
        return decode(data)
    except DecodeError:
        return DecodeError


def test_rows_refuse_exactly_what_the_whole_decode_refuses():
    codec = AvroCodec(schema_json("usage_event.avsc"), 7)
    rows = codec.rows(ROW_FIELDS, row)
    rng = random.Random(9)
    for record in records("usage_event.avsc", 400, seed=5):
        good = codec.encode(record)
        for mutated in (good[: rng.randrange(5, len(good))], good + b"\x00",
                        bytes(b ^ (1 << rng.randrange(8)) if i == rng.randrange(5, len(good)) else b
                              for i, b in enumerate(good))):
            whole = outcome(codec.decode, mutated)
            expected = whole if whole is DecodeError else tuple(
                micros(whole[name]) if name == "timestamp" else whole[name] for name in ROW_FIELDS)
            assert outcome(rows.decode, mutated) == expected


@pytest.mark.parametrize("tail", [
    zigzag_long(123_456_789) + zigzag_long(3) + b"\xffrc",  # `source`, skipped by the row: not UTF-8
    zigzag_long(2**62) + zigzag_long(len(b"src")) + b"src",  # `received_at`, skipped: past datetime.max
])
def test_a_row_refuses_a_record_whose_skipped_fields_the_whole_decode_refuses(tail):
    codec = AvroCodec(schema_json("usage_event.avsc"), 7)
    record = {**next(records("usage_event.avsc", 1, seed=3)), "source": "src",
              "received_at": EPOCH + timedelta(microseconds=123_456_789)}
    good = codec.encode(record)
    end = zigzag_long(123_456_789) + zigzag_long(3) + b"src"
    assert good.endswith(end)
    bad = good[: -len(end)] + tail
    with pytest.raises(DecodeError):
        codec.decode(bad)
    with pytest.raises(DecodeError):
        codec.rows(ROW_FIELDS, row).decode(bad)
    assert codec.projection(ROW_FIELDS).decode(bad)  # which the plain projection does not check


def test_a_row_of_another_writer_schema_is_taken_from_the_whole_decode():
    schema = schema_json("usage_event.avsc")
    older = {**schema, "fields": [f for f in schema["fields"] if f["name"] != "team_id"]}

    class Registry:
        def schema_by_id(self, schema_id):
            return json.dumps(older)

    record = next(records("usage_event.avsc", 1, seed=8))
    rows = AvroCodec(schema, 1, Registry()).rows(ROW_FIELDS, row, offset_of="received_at")
    decoded = rows.decode(AvroCodec(older, 9).encode(record))
    assert decoded == (*(None if name == "team_id" else micros(record[name]) if name == "timestamp" else record[name]
                         for name in ROW_FIELDS), None)  # no offset: its bytes are not ours
    ours = AvroCodec(schema, 1).encode(record)
    assert rows.decode(ours)[:-1] == tuple(micros(record[n]) if n == "timestamp" else record[n] for n in ROW_FIELDS)
    tail = AvroCodec({**schema, "fields": [f for f in schema["fields"] if f["name"] in ("received_at", "source")]}, 1)
    assert ours[rows.decode(ours)[-1]:] == tail.encode(record)[5:]  # the offset is where received_at begins
