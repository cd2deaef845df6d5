"""A specialised Avro body encoder, compiled from a record schema, that writes the same bytes as
fastavro's `schemaless_writer` several times faster for the usage event.

fastavro stays the reference: `compile_encoder` only accepts the shapes it knows (string, int,
long, timestamp-micros, decimal bytes, map of strings, arrays of strings or of such records,
and ["null", X] unions of those) and
returns None for any other schema; the generated function falls back to fastavro for any value
it does not handle itself (a wrong type, an out-of-range number, a missing field, a naive
datetime), so an invalid record fails with fastavro's own error and an odd-but-valid one is
still encoded by fastavro. tests/unit/schemas/test_avro_encoder.py checks the bytes are
identical over thousands of random records.

Two backends write the same bytes and refuse the same values. When the C extension
schemas/_avro_native.c is built (`pip install -e .` builds it where there is a compiler) and
OPENMONETIZE_PURE_AVRO=1 is not set, the fast path is its `Encoder`, a loop over one op per field
(about three times faster again: 1.9 µs for the rated record's tail, 1.4 for a ledger entry); it
computes UTC datetimes and Decimals of up to 38 digits itself and hands the rare rest (another
zone, an odd exponent) to this module's value encoders. Otherwise it is Python generated here,
the reference the native encoder is tested against (tests/unit/schemas/test_avro_native.py).

Why the generated Python is faster than fastavro: one straight-line function per schema (no
per-field dispatch), varints of small numbers from a table, the encoding of low-cardinality
strings (provider, model, event type, customer, ...) cached, and the last timestamp's encoding
remembered (every record of a batch shares `received_at`).
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from decimal import Context, Decimal, Rounded
from typing import Any, Callable

from fastavro import parse_schema, schemaless_writer

from schemas.avro_decoder import _avro_native, native_available

_SMALL = 1 << 14  # non-negative longs below this are encoded from a table
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_CACHE_LIMIT = 4096  # entries per cached string field before the cache is cleared


def _unrolled_varint() -> Callable[[int], bytes]:
    """Unsigned LEB128 of an already zig-zagged value (< 2**70), one unrolled branch per length:
    several times faster than a loop for the 8-byte varints of timestamps."""
    lines = ["def varint(n):"]
    for size in range(1, 11):
        groups = [f"n >> {7 * i} & 127 | 128" for i in range(size - 1)] + [f"n >> {7 * (size - 1)}"]
        lines += [f"    if n < {1 << (7 * size)}:", f"        return bytes(({', '.join(groups)},))"]
    lines.append("    raise OverflowError(n)")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - generated above from constants
    return namespace["varint"]


_short_varint = _unrolled_varint()
# Two varint bytes per 14-bit chunk, continuation bits set: the low 28 bits of a long varint.
_PAIRS = tuple(bytes(((c & 127) | 128, (c >> 7) | 128)) for c in range(1 << 14))
_last_high = [(-1, b"")]  # (n >> 28, its varint) of the last long varint: timestamps share it


def _varint(n: int) -> bytes:
    """Unsigned LEB128 of an already zig-zagged value. Values of 28 bits and more (timestamps)
    are written as two table lookups for the low 28 bits plus the varint of the high part,
    remembered from the previous call (arithmetic on multi-digit ints is slow in CPython)."""
    if n < 0x10000000:
        return _short_varint(n)
    high = n >> 28
    last = _last_high[0]
    if high == last[0]:
        tail = last[1]
    else:
        tail = _short_varint(high) if high < 0x10000000 else _varint(high)
        _last_high[0] = (high, tail)
    return _PAIRS[n & 16383] + _PAIRS[n >> 14 & 16383] + tail


def zigzag_long(value: int) -> bytes:
    """Avro long encoding of value (which must be within the signed 64-bit range)."""
    return _varint((value << 1) if value >= 0 else ((-value) << 1) - 1)


_TABLE = tuple(zigzag_long(i) for i in range(_SMALL))


class _Fallback(Exception):
    """The fast path does not handle this value: encode the record with fastavro."""


def _long(value: Any) -> bytes:
    if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
        raise _Fallback
    if 0 <= value < _SMALL:
        return _TABLE[value]
    return zigzag_long(value)


def _int(value: Any) -> bytes:
    if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
        raise _Fallback
    if 0 <= value < _SMALL:
        return _TABLE[value]
    return zigzag_long(value)


def _string(value: Any) -> bytes:
    if type(value) is not str:
        raise _Fallback
    data = value.encode()
    n = len(data)
    return (_TABLE[n] if n < _SMALL else zigzag_long(n)) + data


def _timestamp_micros(value: Any) -> bytes:
    if type(value) is datetime:
        if value.tzinfo is None:
            raise _Fallback  # fastavro uses the local time zone (mktime) for naive datetimes
        delta = value - _EPOCH
        value = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _long(value)


def _decimal_bytes(precision: int, scale: int) -> Callable[[Any], bytes]:
    # The unscaled integer is the value moved `scale` places: in a context of `precision` digits
    # that traps rounding, so a value with more digits than the column holds never passes as a
    # rounded one; then it must be a whole number (no more than `scale` places) within range.
    exact = Context(prec=max(precision, 1), traps=[Rounded])
    limit = 10**precision

    def encode(value: Any) -> bytes:
        if type(value) is not Decimal:
            raise _Fallback
        try:
            scaled = value.scaleb(scale, exact)
            unscaled = int(scaled)
        except (ArithmeticError, ValueError):  # rounded, NaN, Infinity: fastavro decides
            raise _Fallback from None
        if unscaled != scaled or not -limit < unscaled < limit:
            raise _Fallback  # too precise, too large
        size = (unscaled.bit_length() + 8) // 8
        data = unscaled.to_bytes(size, "big", signed=True)
        return _TABLE[size] + data if size < _SMALL else zigzag_long(size) + data

    return encode


def _map_of_strings(value: Any) -> bytes:
    if type(value) is not dict:
        raise _Fallback
    if not value:
        return b"\x00"
    parts = [_long(len(value))]
    for key, item in value.items():
        parts.append(_string(key))
        parts.append(_string(item))
    parts.append(b"\x00")
    return b"".join(parts)


def _array_of(item: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """An array (a list), each item written by `item`: a string's or a record's encoder."""

    def encode(value: Any) -> bytes:
        if type(value) is not list:
            raise _Fallback
        if not value:
            return b"\x00"
        return b"".join([_long(len(value)), *map(item, value), b"\x00"])

    return encode


_array_of_strings = _array_of(_string)


def _value_encoder(schema: Any) -> Callable[[Any], bytes] | None:
    """The encoding function of a non-union type, or None when it is not one we handle."""
    if isinstance(schema, str):
        schema = {"type": schema}
    if not isinstance(schema, dict):
        return None
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind == "string" and logical is None:
        return _string
    if kind == "long" and logical is None:
        return _long
    if kind == "int" and logical is None:
        return _int
    if kind == "long" and logical == "timestamp-micros":
        return _timestamp_micros
    if kind == "bytes" and logical == "decimal":
        return _decimal_bytes(int(schema["precision"]), int(schema.get("scale", 0)))
    if kind == "map" and schema.get("values") in ("string", {"type": "string"}):
        return _map_of_strings
    if kind == "array" and schema.get("items") in ("string", {"type": "string"}):
        return _array_of_strings
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type") == "record":
        item = compile_encoder(schema["items"])
        return None if item is None else _array_of(item.fast)  # type: ignore[attr-defined]
    return None


# The native encoder's ops (the E_ enum of schemas/_avro_native.c, in its order). An array is
# written by its Python encoder above (E_HELPER).
_STRING, _LONG, _INT, _TIMESTAMP, _DECIMAL, _MAP, _HELPER = range(7)
_NATIVE_OPS = {_string: _STRING, _long: _LONG, _int: _INT, _timestamp_micros: _TIMESTAMP, _map_of_strings: _MAP}


def _decimal_parameters(schema: Any) -> tuple[int, int]:
    """(precision, scale) of a decimal type, else (0, 0)."""
    if isinstance(schema, dict) and schema.get("logicalType") == "decimal":
        return int(schema["precision"]), int(schema.get("scale", 0))
    return 0, 0


def compile_encoder(schema: dict | str, cached_fields: tuple[str, ...] = ()) -> Callable[[dict], bytes] | None:
    """A function record -> Avro body bytes equal to fastavro's, or None if the schema has a
    shape this module does not handle. `cached_fields` names low-cardinality string fields whose
    encodings are worth caching."""
    raw = json.loads(schema) if isinstance(schema, str) else schema
    parsed = parse_schema(raw)
    if not isinstance(raw, dict) or raw.get("type") != "record":
        return None

    namespace: dict[str, Any] = {
        "_Fallback": _Fallback, "_string": _string, "_T": _TABLE, "_zz": zigzag_long, "_str": str, "_int": int
    }
    lines = ["def _fast(r):"]
    outputs = []
    ops = []  # the native encoder's plan: (op, nullable, name, Python encoder of the value, precision, scale)
    for i, field in enumerate(raw["fields"]):
        name, ftype = field["name"], field["type"]
        nullable = False
        if isinstance(ftype, list):
            if len(ftype) != 2 or ftype[0] != "null" or ftype[1] == "null":
                return None
            nullable, ftype = True, ftype[1]
        encoder = _value_encoder(ftype)
        if encoder is None:
            return None
        namespace[f"_e{i}"] = encoder
        precision, scale = _decimal_parameters(ftype)
        op = _NATIVE_OPS.get(encoder, _DECIMAL if precision else _HELPER)
        ops.append((op, int(nullable), name, encoder, precision, scale))
        out = f"x{i}"
        outputs.append(out)
        indent = "    "
        lines.append(f"    v = r[{name!r}]")
        if nullable:
            lines += ["    if v is None:", f"        {out} = b'\\x00'", "    else:"]
            indent = "        "
        # each branch sets `b` to the value's encoding, then: x_i = b (or b'\x02' + b if nullable)
        if encoder is _string and name in cached_fields:
            namespace[f"_c{i}"] = {}
            lines += [
                f"{indent}b = _c{i}.get(v)",
                f"{indent}if b is None:",
                f"{indent}    b = _string(v)",
                f"{indent}    if len(_c{i}) >= {_CACHE_LIMIT}:",
                f"{indent}        _c{i}.clear()",
                f"{indent}    _c{i}[v] = b",
            ]
        elif encoder is _string:
            lines += [
                f"{indent}if type(v) is not _str:",
                f"{indent}    raise _Fallback",
                f"{indent}b = v.encode()",
                f"{indent}n = len(b)",
                f"{indent}b = (_T[n] if n < {_SMALL} else _zz(n)) + b",
            ]
        elif encoder is _long or encoder is _int:
            low, high = (_LONG_MIN, _LONG_MAX) if encoder is _long else (_INT_MIN, _INT_MAX)
            lines += [
                f"{indent}if type(v) is not _int:",
                f"{indent}    raise _Fallback",
                f"{indent}if 0 <= v < {_SMALL}:",
                f"{indent}    b = _T[v]",
                f"{indent}elif {low} <= v <= {high}:",
                f"{indent}    b = _zz(v)",
                f"{indent}else:",
                f"{indent}    raise _Fallback",
            ]
        elif encoder is _timestamp_micros:
            # the last value's encoding is remembered: a batch shares its received_at
            namespace[f"_t{i}"] = [(None, b"")]  # one (value, bytes) tuple, replaced atomically
            lines += [
                f"{indent}last = _t{i}[0]",
                f"{indent}if v is last[0]:",
                f"{indent}    b = last[1]",
                f"{indent}else:",
                f"{indent}    b = _e{i}(v)",
                f"{indent}    _t{i}[0] = (v, b)",
            ]
        else:
            lines.append(f"{indent}b = _e{i}(v)")
        lines.append(f"{indent}{out} = b'\\x02' + b" if nullable else f"{indent}{out} = b")
    lines.append(f"    return b''.join(({', '.join(outputs)},))")  # a tuple even of one field
    if native_available():  # the native encoder (schemas/_avro_native.c) instead, same bytes, same refusals
        fast = _avro_native.Encoder(tuple(ops), _Fallback, Decimal)
    else:
        exec("\n".join(lines), namespace)  # noqa: S102 - code generated from our own schema above
        fast = namespace["_fast"]

    def reference(record: dict) -> bytes:
        out = io.BytesIO()
        schemaless_writer(out, parsed, record)
        return out.getvalue()

    def encode(record: dict) -> bytes:
        try:
            return fast(record)
        except (_Fallback, KeyError, TypeError, AttributeError, UnicodeEncodeError):
            return reference(record)

    encode.reference = reference  # type: ignore[attr-defined]
    encode.fast = fast  # type: ignore[attr-defined]
    return encode
