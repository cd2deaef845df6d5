"""The native decoder and encoder (schemas/_avro_native.c) against the generated Python ones,
their second reference. The decoder on corrupt input: cut short at every length, bytes flipped, huge varints, negative
lengths, bad UTF-8, union indexes other than 0 and 2. On each body it raises or returns exactly
what the Python decoder returns (the same end, the same values by repr: a Decimal's exponent, a
datetime's zone), never more: it refuses what the Python decoder refuses. The one input it
refuses that the Python decoder reads is a varint beyond 64 bits, which no writer produces
(fastavro then decides). The encoder on odd values (Decimals of every precision and exponent,
datetimes in every zone, wrong types): the same bytes, or the same refusal (then fastavro
encodes). And neither leaks."""

from __future__ import annotations

import collections
import io
import random
import tracemalloc
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas import avro_decoder
from schemas.avro_decoder import MAX_MICROS, MIN_MICROS, compile_decoder
from schemas.avro_encoder import compile_encoder, zigzag_long
from schemas.codec import schema_json
from tests.unit.schemas.test_avro_decoder import COMPILED, FEW, ROW_FIELDS, body, records

pytestmark = pytest.mark.skipif(avro_decoder._avro_native is None, reason="schemas._avro_native is not built (no C "
                                "compiler when the package was installed): only the pure-Python path is tested")

Row = collections.namedtuple("Row", [*ROW_FIELDS, "offset"])


def plain_row(*values):
    return ("row", *values)


def both(monkeypatch, schema, **options):
    """(the generated Python decoder, the native one) of the same schema and options."""
    monkeypatch.setenv("OPENMONETIZE_PURE_AVRO", "1")
    python = compile_decoder(schema, **options)
    monkeypatch.delenv("OPENMONETIZE_PURE_AVRO")
    native = compile_decoder(schema, **options)
    assert type(native).__name__ == "Decoder" and type(python).__name__ == "function"
    return python, native


# (schema file, compile_decoder options): the whole record, a projection, rows as the replay reads them
MODES = [(name, {"cached_fields": ("customer_id", "provider", "model", "wallet_id")}) for name in COMPILED] + [
    ("rated_usage.avsc", {"only": FEW}),
    ("usage_event.avsc", {"only": ROW_FIELDS, "row": Row, "raw_timestamps": True, "check_skipped": True,
                          "offset_of": "received_at"}),
    ("usage_event.avsc", {"only": ROW_FIELDS, "row": plain_row, "check_skipped": True}),
    ("rated_usage.avsc", {"only": ("credits", "event_id", "rated_at"), "row": plain_row, "check_skipped": True,
                          "cached_fields": ("event_id",)}),
]


def outcome(decode, data, pos=0):
    try:
        record, end = decode(data, pos)
    except Exception as exc:  # noqa: BLE001 - any refusal
        return exc
    return repr(record), type(record), end


def check_same(python, native, data, pos=0):
    expected, got = outcome(python, data, pos), outcome(native, data, pos)
    if isinstance(got, Exception):
        # refused: so did the Python decoder, or the body holds a varint beyond 64 bits
        assert isinstance(expected, Exception) or "beyond 64 bits" in str(got), (data, expected, got)
    else:
        assert got == expected, data


# Bytes that corrupt a body in the ways a fuzzer finds first.
NASTY = [
    b"\xff" * 9 + b"\x01",  # the largest valid varint (a long of 64 bits)
    b"\xff" * 9 + b"\x7f",  # beyond 64 bits
    b"\x80" * 11,  # longer than 10 bytes
    b"\xff" * 10,  # a varint that never ends
    b"\x01",  # -1: a negative length or block count
    b"\x03", b"\x04", b"\x06", b"\x80\x01",  # union indexes other than 0 and 2
    b"\x04\xff\xfe",  # a string of two bytes that are not UTF-8
    b"\x06\xed\xa0\x80",  # an encoded surrogate: not UTF-8 either
    b"\x02\xc3",  # a cut multi-byte character
    b"\xfe\xff\xff\xff\x0f",  # a length of 2**31 - 1
    b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # the smallest long, as a length
    b"\x00",
]


def mutations(good: bytes, rng: random.Random):
    for cut in range(len(good)):
        yield good[:cut]
    yield good + b"\x00"
    for _ in range(20):
        at = rng.randrange(len(good))
        yield good[:at] + bytes([good[at] ^ (1 << rng.randrange(8))]) + good[at + 1:]
        yield good[:at] + bytes([rng.randrange(256)]) + good[at + 1:]
        nasty = rng.choice(NASTY)
        yield good[:at] + nasty + good[at:]  # inserted
        yield good[:at] + nasty + good[at + len(nasty):]  # over


@pytest.mark.parametrize("name, options", MODES, ids=lambda x: x if isinstance(x, str) else ",".join(x))
def test_corrupt_bodies_are_refused_or_read_as_the_python_decoder_reads_them(monkeypatch, name, options):
    python, native = both(monkeypatch, schema_json(name), **options)
    parsed = parse_schema(schema_json(name))
    rng = random.Random(zlib.crc32(name.encode()))  # not hash(): salted per process, so a failure would not repeat
    for record in records(name, 60, seed=21):
        good = body(parsed, record)
        check_same(python, native, good)
        check_same(python, native, b"\x00\x00\x00\x00\x07" + good, 5)
        for mutated in mutations(good, rng):
            check_same(python, native, mutated)


@pytest.mark.parametrize("name, options", MODES[:1] + MODES[-3:-1])
def test_random_bytes_never_crash_it(monkeypatch, name, options):
    python, native = both(monkeypatch, schema_json(name), **options)
    rng = random.Random(5)
    for _ in range(20000):
        check_same(python, native, rng.randbytes(rng.choice((1, 8, 40, 200))))


def call(decode, args):
    try:
        record, end = decode(*args)
    except Exception as exc:  # noqa: BLE001 - any refusal
        return exc
    return repr(record), end


def test_odd_calls_are_answered_by_the_python_decoder(monkeypatch):
    python, native = both(monkeypatch, schema_json("usage_event.avsc"))
    good = body(parse_schema(schema_json("usage_event.avsc")), next(records("usage_event.avsc", 1, seed=2)))
    for args in ((bytearray(good), 0), (memoryview(good), 0), (good, -1), (good, len(good) + 1), (good, 2**70),
                 (good, True), (good,), (good, 0, 1), (None, 0)):
        expected, got = call(python, args), call(native, args)
        assert type(got) is type(expected) if isinstance(expected, Exception) else got == expected
    assert native.fallback is not None


@pytest.mark.parametrize("nullable", [False, True])
def test_timestamps_are_the_datetimes_python_builds(monkeypatch, nullable):
    ftype = {"type": "long", "logicalType": "timestamp-micros"}
    schema = {"type": "record", "name": "T", "fields": [{"name": "at", "type": ["null", ftype] if nullable else ftype}]}
    python, native = both(monkeypatch, schema)
    raw_python, raw_native = both(monkeypatch, schema, only=("at",), row=plain_row, raw_timestamps=True)
    rng = random.Random(3)
    edges = [0, 1, -1, MIN_MICROS, MIN_MICROS - 1, MIN_MICROS + 1, MAX_MICROS, MAX_MICROS + 1, MAX_MICROS - 1,
             -(2**63), 2**63 - 1, 86_400_000_000, -86_400_000_000, -86_400_000_001, 951_782_400_000_000,
             (datetime(2000, 2, 29, tzinfo=timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)]
    for n in edges + [rng.randrange(MIN_MICROS, MAX_MICROS + 1) for _ in range(100_000)]:
        data = (b"\x02" if nullable else b"") + zigzag_long(n)
        assert outcome(native, data) == outcome(python, data) or isinstance(outcome(native, data), Exception) \
            and isinstance(outcome(python, data), Exception), n
        assert outcome(raw_native, data) == outcome(raw_python, data) or isinstance(outcome(raw_native, data), Exception) \
            and isinstance(outcome(raw_python, data), Exception), n
    at, _ = native(zigzag_long(0) if not nullable else b"\x02" + zigzag_long(0), 0)
    assert at["at"].tzinfo is timezone.utc


def test_decoding_leaks_nothing(monkeypatch):
    """Good and corrupt bodies decoded over and over: the memory traced does not grow (a value
    or an exception's reference not released would grow it by the loop's count)."""
    name = "rated_usage.avsc"
    decoders = [both(monkeypatch, schema_json(name), **options)[1] for options in
                ({"cached_fields": ("customer_id",)}, {"only": FEW})]
    decoders.append(both(monkeypatch, schema_json("usage_event.avsc"), **MODES[len(COMPILED) + 1][1])[1])
    parsed = {n: parse_schema(schema_json(n)) for n in ("rated_usage.avsc", "usage_event.avsc")}
    bodies = {n: [body(parsed[n], r) for r in records(n, 50, seed=1)] for n in parsed}
    rng = random.Random(1)
    corrupt = {n: [m for b in bodies[n][:5] for m in mutations(b, rng)] for n in parsed}

    def run():
        for i, decode in enumerate(decoders):
            n = "usage_event.avsc" if i == 2 else name
            for data in bodies[n] + corrupt[n]:
                try:
                    decode(data, 0)
                except Exception:  # noqa: BLE001, S110 - refusals are part of the loop
                    pass

    assert_no_growth(run)


# ---- the encoder: the native one's bytes and refusals are the generated Python encoder's ----

def both_encoders(monkeypatch, schema):
    """(the generated Python `fast`, the native one) of the same schema: each raises where the
    encoder falls back to fastavro."""
    monkeypatch.setenv("OPENMONETIZE_PURE_AVRO", "1")
    python = compile_encoder(schema).fast
    monkeypatch.delenv("OPENMONETIZE_PURE_AVRO")
    native = compile_encoder(schema).fast
    assert type(native).__name__ == "Encoder" and type(python).__name__ == "function"
    return python, native


def encoded(encode, record):
    try:
        return encode(record)
    except Exception as exc:  # noqa: BLE001 - the refusal's type is compared
        return type(exc)


def one_field(ftype, nullable=False):
    return {"type": "record", "name": "R", "fields": [{"name": "v", "type": ["null", ftype] if nullable else ftype}]}


def rand_decimal(rng: random.Random) -> Decimal:
    kind = rng.random()
    if kind < 0.05:
        return Decimal(rng.choice(("NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "NaN123", "0", "-0", "0E+30",
                                   "0E-30", "-0E-9999", "0E+99999", "1E+999", "1E-99999")))
    digits = rng.choice((1, 2, 5, 12, 20, 26, 37, 38, 39, 40, 45))
    coefficient = rng.randrange(10 ** (digits - 1) if rng.random() < 0.8 else 0, 10**digits)
    if rng.random() < 0.3:
        coefficient *= 10 ** rng.randrange(1, 8)  # trailing zeros
    exponent = rng.choice((0, -12, 12, rng.randrange(-60, 40)))
    return Decimal(f"{rng.choice(('', '-'))}{coefficient}E{exponent}")


@pytest.mark.parametrize("precision, scale", [(38, 12), (10, 2), (5, 0), (38, 0), (1, 0), (20, 20), (40, 10)])
@pytest.mark.parametrize("nullable", [False, True])
def test_decimals_encode_as_the_python_encoder_encodes_them(monkeypatch, precision, scale, nullable):
    schema = one_field({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}, nullable)
    python, native = both_encoders(monkeypatch, schema)
    parsed = parse_schema(schema)
    rng = random.Random(precision * 100 + scale)
    for i in range(30000):
        value = rand_decimal(rng)
        with localcontext() as context:
            context.capitals = i % 2  # str(Decimal) writes 1e+5 then
            expected, got = encoded(python, {"v": value}), encoded(native, {"v": value})
        assert got == expected, value
        # and fastavro's bytes where fastavro writes it: both encoders also write a value with more
        # places than the scale when those are zeros (1.5000 at scale 2), which fastavro refuses
        if type(got) is bytes and i % 10 == 0 and value.as_tuple().exponent >= -scale:
            out = io.BytesIO()
            schemaless_writer(out, parsed, {"v": value})
            assert got == out.getvalue(), value
    for value in (1.5, 1, "1", None, True, type("D", (Decimal,), {})("1")):
        assert encoded(native, {"v": value}) == encoded(python, {"v": value}), value


@pytest.mark.parametrize("nullable", [False, True])
def test_timestamps_encode_as_the_python_encoder_encodes_them(monkeypatch, nullable):
    python, native = both_encoders(monkeypatch, one_field({"type": "long", "logicalType": "timestamp-micros"}, nullable))
    rng = random.Random(8)
    zones = (timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), timezone(timedelta(0)))
    values = [datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc),
              datetime(1970, 1, 1), datetime(2000, 2, 29, tzinfo=timezone.utc), 2**63 - 1, -(2**63), 2**63, True,
              1.5, "2020-01-01", type("DT", (datetime,), {})(2020, 1, 1, tzinfo=timezone.utc)]
    for _ in range(50000):
        at = datetime.min.replace(tzinfo=timezone.utc) + timedelta(microseconds=rng.randrange(0, MAX_MICROS - MIN_MICROS))
        values.append(at.astimezone(rng.choice(zones)) if at.year > 1 and at.year < 9999 else at)
    for value in values:
        assert encoded(native, {"v": value}) == encoded(python, {"v": value}), value


def test_other_values_encode_or_are_refused_as_the_python_encoder_does(monkeypatch):
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "s", "type": "string"}, {"name": "i", "type": ["null", "int"]}, {"name": "l", "type": "long"},
        {"name": "m", "type": ["null", {"type": "map", "values": "string"}]}]}
    python, native = both_encoders(monkeypatch, schema)
    good = {"s": "x", "i": 1, "l": 2, "m": {"k": "v"}}
    odd = {"s": ["", "é€🙂" * 100, "\ud800", "a\x00b", 1, None, b"x", type("S", (str,), {})("x"), "x" * 5000],
           "i": [None, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, True, 1.0, "1", 2**80],
           "l": [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, False, 0, -1, 64, -65],
           "m": [None, {}, {"k": 1}, {1: "v"}, {"é": "\ud800"}, {f"k{i}": "v" * i for i in range(300)}, [("k", "v")], "x"]}
    for field, values in odd.items():
        for value in values:
            record = {**good, field: value}
            assert encoded(native, record) == encoded(python, record), (field, value)
    for record in ({k: v for k, v in good.items() if k != "l"}, None, [1], collections.OrderedDict(good),
                   collections.ChainMap(good)):
        assert encoded(native, record) == encoded(python, record), record


def test_encoding_leaks_nothing(monkeypatch):
    name = "rated_usage.avsc"
    python, native = both_encoders(monkeypatch, schema_json(name))
    rows = list(records(name, 200, seed=4))
    rows += [{**r, "credits": Decimal("1E-20")} for r in rows[:20]] + [{**r, "rated_at": 1.5} for r in rows[:20]]
    rows += [{**r, "source": "\ud800"} for r in rows[:20]] + [{k: v for k, v in r.items() if k != "revision"}
                                                              for r in rows[:20]]

    def run():
        for record in rows:
            encoded(native, record)

    assert_no_growth(run)


def assert_no_growth(run) -> None:
    """`run()` over and over, once first for the caches to fill: the memory traced does not grow
    (a value or an exception's reference not released would grow it by the loop's count)."""
    run()
    tracemalloc.start()
    try:
        run()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            run()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 50_000, f"{grown} bytes more after 20 passes"
