"""The specialised encoder writes exactly fastavro's bytes (fastavro is the reference), with both
backends (the generated Python and the native encoder, the `avro_backend` fixture)."""

from __future__ import annotations

import io
import random
import string
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fastavro import parse_schema, schemaless_writer

from openmonetize.settings import Settings
from schemas.avro_encoder import _varint, compile_encoder, zigzag_long
from producers.loadgen import EventGenerator
from schemas.usage_event import LOW_CARDINALITY_FIELDS
from schemas.codec import AvroCodec, schema_json, schema_text
from schemas.usage_event import EventLimits, convert_event, to_record

SCHEMA = schema_json("usage_event.avsc")
PARSED = parse_schema(SCHEMA)


def reference(record: dict) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, PARSED, record)
    return out.getvalue()


@pytest.fixture
def encode(avro_backend):
    encoder = compile_encoder(schema_text("usage_event.avsc"), LOW_CARDINALITY_FIELDS)
    assert encoder is not None
    assert (type(encoder.fast).__name__ == "Encoder") == (avro_backend == "native")
    return encoder


ALPHABET = string.ascii_letters + string.digits + "-_:. " + "éüß€日本語中文🙂🚀\u0000\u2028"


def rand_str(rng: random.Random, max_len: int = 40) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.choice((0, 1, 3, 10, max_len))))


def rand_long(rng: random.Random) -> int:
    kind = rng.random()
    if kind < 0.3:
        return rng.randrange(0, 200)
    if kind < 0.5:
        return rng.randrange(0, 50_000_000)
    if kind < 0.6:
        return rng.choice((0, 1, -1, 63, 64, -64, -65, 8191, 8192, 16383, 16384, 2**28 - 1, 2**28, 2**31 - 1,
                           -(2**31), 2**63 - 1, -(2**63), 2**56, 2**49 - 1))
    bits = rng.randrange(1, 64)
    return rng.randrange(-(2**bits), 2**bits)


def rand_int(rng: random.Random) -> int:
    return rng.choice((rng.randrange(1, 5), rng.randrange(-(2**31), 2**31), 2**31 - 1, -(2**31), 0))


def rand_decimal(rng: random.Random) -> Decimal:
    digits = rng.randrange(1, 27)
    unscaled = rng.randrange(0, 10**digits)
    exponent = rng.randrange(-12, 3)
    sign = rng.choice(("", "-"))
    value = Decimal(f"{sign}{unscaled}E{exponent}")
    return rng.choice((value, Decimal("0"), Decimal("-0"), Decimal("0.000000000001"), Decimal("1E+11"),
                       Decimal("999999999999.999999999999"), Decimal("12.5")))


def rand_time(rng: random.Random) -> datetime | int:
    base = datetime(1900, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=rng.randrange(0, 300 * 365 * 86400 * 10**6))
    zone = rng.choice((timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))))
    value = base.astimezone(zone)
    return value if rng.random() < 0.95 else rng.randrange(-(2**62), 2**62)


def random_record(rng: random.Random) -> dict:
    def maybe(make):
        return None if rng.random() < 0.4 else make()

    return {
        "event_id": rand_str(rng, 128),
        "customer_id": rng.choice(("cus_a", "cus_b", rand_str(rng))),
        "user_id": rand_str(rng),
        "team_id": maybe(lambda: rand_str(rng)),
        "event_type": rng.choice(("TOKEN_USAGE", "EMBEDDING", "AUDIO", "CUSTOM", "IMAGE_GENERATION")),
        "feature_id": rand_str(rng),
        "provider": maybe(lambda: rng.choice(("openai", "anthropic", rand_str(rng)))),
        "model": maybe(lambda: rand_str(rng)),
        "input_tokens": maybe(lambda: rand_long(rng)),
        "output_tokens": maybe(lambda: rand_long(rng)),
        "cached_input_tokens": maybe(lambda: rand_long(rng)),
        "image_count": maybe(lambda: rand_int(rng)),
        "image_size": maybe(lambda: rand_str(rng)),
        "quality": maybe(lambda: rand_str(rng)),
        "unit_type": maybe(lambda: rand_str(rng)),
        "quantity": maybe(lambda: rand_decimal(rng)),
        "reservation_id": maybe(lambda: rand_str(rng)),
        "timestamp": rand_time(rng),
        "metadata": maybe(lambda: {rand_str(rng, 64): rand_str(rng, 200) for _ in range(rng.choice((0, 1, 2, 5, 64)))}),
        "received_at": maybe(lambda: rand_time(rng)),
        "source": rng.choice(("kafka", "http", "proxy")),
    }


def test_random_records_are_byte_identical_to_fastavro(encode):
    rng = random.Random(20261126)
    for _ in range(5000):
        record = random_record(rng)
        assert encode(record) == reference(record), record


def test_contract_records_from_the_generator_are_byte_identical(encode):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    limits = EventLimits.from_settings(Settings(_env_file=None))
    generator = EventGenerator(7, ["cus_1", "cus_2"], 50, 0.01, 0.05, now=lambda: now)
    for _ in range(5000):
        event = generator.next()
        record = to_record(convert_event(event), customer_id=event["customer_id"], source="kafka",
                           received_at=now, limits=limits)
        assert encode(record) == reference(record), record


@pytest.mark.parametrize("name", ["rated_usage.avsc", "ledger_entry.avsc", "wallet_command.avsc", "dlq_record.avsc",
                                  "wallet_balance.avsc"])
def test_random_records_of_the_other_schemas_are_byte_identical(avro_backend, name):
    from tests.unit.schemas.test_avro_decoder import records

    codec, parsed = AvroCodec(schema_json(name), 1), parse_schema(schema_json(name))
    for record in records(name, 1500, seed=17):
        out = io.BytesIO()
        schemaless_writer(out, parsed, record)
        assert codec.encode(record)[5:] == out.getvalue()


def test_framing_matches_avro_codec(encode):
    codec = AvroCodec(SCHEMA, 42)
    record = random_record(random.Random(1))
    assert codec.encode(record) == b"\x00\x00\x00\x00\x2a" + encode(record)
    assert codec.decode(b"\x00\x00\x00\x00\x2a" + encode(record))["event_id"] == record["event_id"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("input_tokens", True),
        ("input_tokens", 1.5),
        ("input_tokens", 2**63),
        ("image_count", 2**31),
        ("provider", 12),
        ("event_id", None),
        ("quantity", Decimal("1E-13")),
        ("quantity", Decimal("NaN")),
        ("metadata", {"k": 1}),
        ("user_id", "\ud800"),
    ],
)
def test_values_fastavro_refuses_are_refused_the_same_way(encode, field, value):
    record = random_record(random.Random(2))
    record[field] = value
    with pytest.raises(Exception) as expected:
        reference(record)
    with pytest.raises(type(expected.value)):
        encode(record)


@pytest.mark.parametrize("quantity", [
    "0", "-0", "0E+5", "1E+25", "-1E+25", "99999999999999999999999999.999999999999", "1.000000000000",
    "5.0000000000000000000000000000000000000001", "0.1234567890123", "1E-12", "-1E-12", "sNaN", "-Infinity",
    "1E+26", "123456789012345678901234567890123456789", "7.10000000000000000000000000000000000000000000000",
])
def test_decimal_edges_are_byte_identical_or_refused_the_same_way(encode, quantity):
    record = random_record(random.Random(4))
    record["quantity"] = Decimal(quantity)
    try:
        expected = reference(record)
    except Exception as exc:  # noqa: BLE001 - whatever fastavro raises, the encoder raises too
        with pytest.raises(type(exc)):
            encode(record)
    else:
        assert encode(record) == expected


def test_odd_but_valid_values_fall_back_to_fastavro(encode):
    record = random_record(random.Random(3))
    record["timestamp"] = datetime(2026, 1, 1, 12, 0)  # naive: fastavro uses local time
    del record["team_id"]  # missing: the default (null)
    assert encode(record) == reference(record)


def test_varints_match_the_loop_definition():
    def loop(n: int) -> bytes:
        out = bytearray()
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    rng = random.Random(4)
    for _ in range(50_000):
        n = rng.getrandbits(rng.randrange(0, 65))
        assert _varint(n) == loop(n)
    assert zigzag_long(-1) == b"\x01" and zigzag_long(1) == b"\x02" and zigzag_long(-(2**63)) == b"\xff" * 9 + b"\x01"


def test_the_wallet_balance_with_its_arrays_is_compiled():
    """Written once per wallet per batch by the wallet agent: fastavro took ~27 µs a record."""
    assert AvroCodec(schema_json("wallet_balance.avsc"), 1)._fast is not None


def test_arrays_of_other_values_fall_back_to_fastavro(avro_backend):
    """An array given as a tuple, or holding a value of another type or range, is fastavro's to
    write or refuse."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "ids", "type": ["null", {"type": "array", "items": "string"}]},
        {"name": "lots", "type": {"type": "array", "items": {"type": "record", "name": "L", "fields": [
            {"name": "n", "type": "long"}]}}}]}
    encode, parsed = compile_encoder(schema), parse_schema(schema)
    for record in ({"ids": None, "lots": ({"n": 2**40},)}, {"ids": ["é" * 9000], "lots": [{"n": -1}, {"n": 0}]},
                   {"ids": [], "lots": []}, {"ids": ["a"], "lots": [{"n": 2**70}]}, {"ids": ("a", "b"), "lots": []},
                   {"ids": ["a", 1], "lots": []}, {"ids": None, "lots": [{"n": "x"}]}):
        out = io.BytesIO()
        try:
            schemaless_writer(out, parsed, record)
        except (TypeError, ValueError, AttributeError, OverflowError) as refused:
            with pytest.raises(type(refused)):
                encode(record)
        else:
            assert encode(record) == out.getvalue()


def test_unknown_schema_shapes_are_left_to_fastavro():
    assert compile_encoder({"type": "record", "name": "R", "fields": [{"name": "x", "type": {"type": "array", "items": "double"}}]}) is None
    assert compile_encoder({"type": "record", "name": "R", "fields": [{"name": "x", "type": "double"}]}) is None
    assert compile_encoder({"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "string", "long"]}]}) is None
