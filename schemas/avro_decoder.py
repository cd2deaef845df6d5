"""A specialised Avro body decoder, compiled from a record schema, that returns the same records
as fastavro's `schemaless_reader` (reader schema = writer schema) about three times faster in
Python, and two to four times faster again natively.

Every stage reads Avro (the usage agent its events, the wallet agent its debits, the sinks their
records) and fastavro's generic reader was the largest cost of the ClickHouse sink. As for the
encoder (schemas/avro_encoder.py), fastavro stays the reference: `compile_decoder` only accepts
the shapes it knows (string, bytes, int, long, timestamp-micros, decimal bytes, map of strings,
and ["null", X] unions of those) and returns None for any other schema; the caller decodes with
fastavro whenever the fast path raises or does not end exactly at the end of the body, so corrupt
input still fails with fastavro's own error. tests/unit/schemas/test_avro_decoder.py checks the
records are equal over thousands of random ones.

Two backends read the same records and refuse the same bodies. When the C extension
schemas/_avro_native.c is built (`pip install -e .` builds it where there is a compiler) and
OPENMONETIZE_PURE_AVRO=1 is not set, `compile_decoder` returns its `Decoder`: a loop over a plan of
one op per field, made below by the same rules as the generated code (3.0 µs for the usage
event's 21 fields instead of 7.6; 2.2 instead of 8.9 for the wallet's 9 of the rated record's
33). It refuses one input the Python reads: a varint beyond 64 bits, which no writer produces
(fastavro then reads it). Otherwise it returns Python generated here, the reference the native
decoder is fuzzed against (tests/unit/schemas/test_avro_native.py).

Why the generated Python is faster than fastavro: one straight-line function per schema,
one-byte varints read inline, and the values that repeat within a batch (decimal amounts,
timestamps, low-cardinality strings) cached.
"""

from __future__ import annotations

import decimal
import json
import os
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

try:
    from schemas import _avro_native
except ImportError:  # not built (no compiler at install): the generated Python decoder alone
    _avro_native = None

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CACHE_LIMIT = 4096  # entries per cache before it is cleared (also in _avro_native.c)

# The native decoder's ops (the enum at the top of schemas/_avro_native.c, in its order) and
# the shapes of its record (OUT_DICT, OUT_NAMEDTUPLE, OUT_CALL).
(_OFFSET, _SKIP_SIZED, _SKIP_LONG, _SKIP_MAP, _STRING, _BYTES, _INT, _LONG, _TIMESTAMP_RAW, _TIMESTAMP,
 _DECIMAL, _MAP) = range(12)
_OUT_DICT, _OUT_NAMEDTUPLE, _OUT_CALL = range(3)


def native_available() -> bool:
    """Whether compile_decoder returns the native decoder: the extension is built and
    OPENMONETIZE_PURE_AVRO=1 does not ask for the pure-Python path."""
    return _avro_native is not None and os.environ.get("OPENMONETIZE_PURE_AVRO") != "1"


class _Corrupt(Exception):
    """The body does not decode on the fast path: let fastavro say why."""


def _unrolled_varint() -> Callable[[bytes, int], tuple[int, int]]:
    """(zig-zag decoded long, position after it) of the varint at `pos`, one unrolled branch per
    length: several times faster than a loop for the 8-byte varints of timestamps."""
    lines = ["def varint(buf, pos):", "    r = 0"]
    for i in range(10):
        lines += [f"    b = buf[pos + {i}]",
                  f"    r |= (b & 127) << {7 * i}" if i else "    r = b & 127",
                  "    if b < 128:",
                  f"        return (r >> 1) ^ -(r & 1), pos + {i + 1}"]
    lines.append("    raise _Corrupt('varint longer than 10 bytes')")
    namespace: dict[str, Any] = {"_Corrupt": _Corrupt}
    exec("\n".join(lines), namespace)  # noqa: S102 - generated above from constants
    return namespace["varint"]


_varint = _unrolled_varint()


def _map_of_strings(buf: bytes, pos: int) -> tuple[dict, int]:
    out = {}
    while True:
        count, pos = _varint(buf, pos)
        if count == 0:
            return out, pos
        if count < 0:
            count = -count
            _size, pos = _varint(buf, pos)
        for _ in range(count):
            size, pos = _varint(buf, pos)
            end = pos + size
            if size < 0 or end > len(buf):
                raise _Corrupt("string past the end")
            key = buf[pos:end].decode()
            size, end = _varint(buf, end)
            pos = end + size
            if size < 0 or pos > len(buf):
                raise _Corrupt("string past the end")
            out[key] = buf[end:pos].decode()


def _skip_map(buf: bytes, pos: int) -> int:
    """The position after a map of strings, its keys and values stepped over."""
    while True:
        count, pos = _varint(buf, pos)
        if count == 0:
            return pos
        if count < 0:
            count = -count
            _size, pos = _varint(buf, pos)
        for _ in range(2 * count):
            size, pos = _varint(buf, pos)
            pos += size
            if size < 0 or pos > len(buf):
                raise _Corrupt("string past the end")


def _kind(schema: Any) -> tuple[str, Any] | None:
    """(kind, parameter) of a non-union type this module decodes, else None."""
    if isinstance(schema, str):
        schema = {"type": schema}
    if not isinstance(schema, dict):
        return None
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind in ("string", "bytes", "int", "long") and logical is None:
        return kind, None
    if kind == "long" and logical == "timestamp-micros":
        return "timestamp", None
    if kind == "bytes" and logical == "decimal":
        return "decimal", (int(schema["precision"]), int(schema.get("scale", 0)))
    if kind == "map" and schema.get("values") in ("string", {"type": "string"}):
        return "map", None
    return None


def _read_long(target: str, indent: str) -> list[str]:
    """Lines that read a zig-zag long at `pos` into `target`: one- and two-byte values (lengths,
    token counts) inline."""
    return [
        f"{indent}c = buf[pos]",
        f"{indent}if c < 128:",
        f"{indent}    {target} = (c >> 1) ^ -(c & 1)",
        f"{indent}    pos += 1",
        f"{indent}elif buf[pos + 1] < 128:",
        f"{indent}    c = (c & 127) | (buf[pos + 1] << 7)",
        f"{indent}    {target} = (c >> 1) ^ -(c & 1)",
        f"{indent}    pos += 2",
        f"{indent}else:",
        f"{indent}    {target}, pos = _varint(buf, pos)",
    ]


# An 8-byte varint (a timestamp of these decades in microseconds): the continuation bit set in
# the first seven bytes and clear in the eighth; its seven 7-bit groups gathered in one expression.
_EIGHT_MASK, _EIGHT_FORM = 0x8080808080808080, 0x0080808080808080
_EIGHT_GATHER = " | ".join(f"((x >> {i}) & {0x7F << (7 * i)})" for i in range(8))


def _read_timestamp(target: str, indent: str) -> list[str]:
    """`_read_long` for a timestamp: an 8-byte value read without a loop."""
    return [
        f"{indent}x = int_from(buf[pos:pos + 8], 'little')",
        f"{indent}if x & {_EIGHT_MASK} == {_EIGHT_FORM} and pos + 8 <= L:",
        f"{indent}    c = {_EIGHT_GATHER}",
        f"{indent}    {target} = (c >> 1) ^ -(c & 1)",
        f"{indent}    pos += 8",
        f"{indent}else:",
        *_read_long(target, indent + "    "),
    ]


def _read_sized(indent: str) -> list[str]:
    """Lines that read a length-prefixed value's bounds into `pos`..`end` and advance `pos`."""
    return [
        *_read_long("n", indent),
        f"{indent}end = pos + n",
        f"{indent}if n < 0 or end > L:",
        f"{indent}    raise _Corrupt('past the end')",
        f"{indent}s = buf[pos:end]",
        f"{indent}pos = end",
    ]


# The microseconds from the epoch that `_EPOCH + timedelta(microseconds=n)` can represent: a
# timestamp read raw (`raw_timestamps`) or checked (`check_skipped`) is refused outside them, as
# the whole decode refuses it.
MIN_MICROS = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
MAX_MICROS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)


def compile_decoder(
    schema: dict | str, cached_fields: tuple[str, ...] = (), only: Collection[str] | None = None,
    row: Callable[..., Any] | None = None, raw_timestamps: bool = False, check_skipped: bool = False,
    offset_of: str | None = None,
) -> Callable[[bytes, int], tuple] | None:
    """A function (buffer, start) -> (record, end) equal to fastavro's reading of a body written
    with `schema`, or None if the schema has a shape this module does not handle. It raises on
    input it cannot read; the caller then asks fastavro. `cached_fields` names low-cardinality
    string fields whose decodings are worth caching.

    With `only`, the record has just those fields: the others are stepped over (their lengths
    read and bounds checked, their bytes neither decoded nor checked as UTF-8),
    which is most of the work saved.

    With `row` (and `only`, a sequence), the record is `row(*values)`, the values in `only`'s
    order, instead of a dict: a named tuple, say. `raw_timestamps` keeps a timestamp as the
    integer of microseconds it is written as (no datetime built; refused where the whole
    decode's datetime would fail). `check_skipped` checks the skipped fields as the whole decode
    does (UTF-8 of strings and of map keys and values, an int's range, a timestamp's range)
    without keeping their values: the body is then accepted exactly when the whole decode
    accepts it. `offset_of` names a field whose position in the buffer is the row's last value:
    the bytes before it hold every field before it, which a reader may compare as bytes.

    The function is the native decoder (schemas/_avro_native.c) when it is built and
    OPENMONETIZE_PURE_AVRO=1 is not set, else generated Python code; both follow the plan below
    (one op per field) and read the same records."""
    raw = json.loads(schema) if isinstance(schema, str) else schema
    if not isinstance(raw, dict) or raw.get("type") != "record":
        return None
    namespace: dict[str, Any] = {
        "_Corrupt": _Corrupt, "_varint": _varint, "_map": _map_of_strings, "_skip_map": _skip_map,
        "_EPOCH": _EPOCH, "_td": timedelta, "_len": len, "_row": row, "_lo": MIN_MICROS, "_hi": MAX_MICROS,
        "int_from": int.from_bytes,
    }
    lines = ["def _fast(buf, pos):", "    L = _len(buf)"]
    names = []
    ops = []  # the native decoder's plan: (op, nullable, slot or -1, cache dict, Decimal maker)
    offset_slot = len(raw["fields"])  # after every field's slot
    for i, field in enumerate(raw["fields"]):
        name, ftype = field["name"], field["type"]
        nullable = False
        if isinstance(ftype, list):
            if len(ftype) != 2 or ftype[0] != "null" or ftype[1] == "null":
                return None
            nullable, ftype = True, ftype[1]
        found = _kind(ftype)
        if found is None:
            return None
        kind, parameter = found
        out, indent = f"v{i}", "    "
        if name == offset_of:
            lines.append("    offset = pos")
            ops.append((_OFFSET, 0, offset_slot, None, None))
        skipped = only is not None and name not in only
        if skipped and check_skipped and kind == "decimal":
            skipped = False  # built (its checks are the Decimal's), not returned
            kept = False
        else:
            kept = not skipped
        slot = len(names) if kept else -1
        if kept:
            names.append((name, out))
        if nullable:
            lines += [
                "    c = buf[pos]",
                "    pos += 1",
                "    if c == 0:",
                f"        {out} = None",
                "    elif c != 2:",
                "        raise _Corrupt('union index')",
                "    else:",
            ]
            indent = "        "
        if skipped and check_skipped and kind == "string":
            lines += [*_read_sized(indent), f"{indent}s.decode()"]
            ops.append((_STRING, nullable, -1, None, None))
        elif skipped and check_skipped and kind == "int":
            lines += [*_read_long("n", indent),
                      f"{indent}if not -2147483648 <= n <= 2147483647:",
                      f"{indent}    raise _Corrupt('int out of range')"]
            ops.append((_INT, nullable, -1, None, None))
        elif skipped and check_skipped and kind == "timestamp":
            lines += [*_read_timestamp("n", indent),
                      f"{indent}if not _lo <= n <= _hi:",
                      f"{indent}    raise _Corrupt('timestamp out of range')"]
            ops.append((_TIMESTAMP_RAW, nullable, -1, None, None))
        elif skipped and check_skipped and kind == "map":
            lines += [f"{indent}_, pos = _map(buf, pos)"]
            ops.append((_MAP, nullable, -1, None, None))
        elif skipped and kind in ("string", "bytes", "decimal"):
            lines += [*_read_long("n", indent),
                      f"{indent}pos += n",
                      f"{indent}if n < 0 or pos > L:",
                      f"{indent}    raise _Corrupt('past the end')"]
            ops.append((_SKIP_SIZED, nullable, -1, None, None))
        elif skipped and kind == "timestamp":
            lines += _read_timestamp("n", indent)
            ops.append((_SKIP_LONG, nullable, -1, None, None))
        elif skipped and kind in ("int", "long"):
            lines += _read_long("n", indent)
            ops.append((_SKIP_LONG, nullable, -1, None, None))
        elif skipped and kind == "map":
            lines += [f"{indent}pos = _skip_map(buf, pos)"]
            ops.append((_SKIP_MAP, nullable, -1, None, None))
        elif kind == "string" and name in cached_fields:
            namespace[f"_c{i}"] = {}
            lines += [*_read_sized(indent),
                      f"{indent}{out} = _c{i}.get(s)",
                      f"{indent}if {out} is None:",
                      f"{indent}    {out} = s.decode()",
                      f"{indent}    if _len(_c{i}) >= {_CACHE_LIMIT}:",
                      f"{indent}        _c{i}.clear()",
                      f"{indent}    _c{i}[s] = {out}"]
            ops.append((_STRING, nullable, slot, namespace[f"_c{i}"], None))
        elif kind == "string":
            lines += [*_read_sized(indent), f"{indent}{out} = s.decode()"]
            ops.append((_STRING, nullable, slot, None, None))
        elif kind == "bytes":
            lines += [*_read_sized(indent), f"{indent}{out} = s"]
            ops.append((_BYTES, nullable, slot, None, None))
        elif kind in ("int", "long"):
            lines += _read_long(out, indent)
            ops.append((_INT if kind == "int" else _LONG, nullable, slot, None, None))
            if kind == "int":
                lines += [f"{indent}if not -2147483648 <= {out} <= 2147483647:",
                          f"{indent}    raise _Corrupt('int out of range')"]
        elif kind == "timestamp" and raw_timestamps:
            lines += [*_read_timestamp(out, indent),
                      f"{indent}if not _lo <= {out} <= _hi:",
                      f"{indent}    raise _Corrupt('timestamp out of range')"]
            ops.append((_TIMESTAMP_RAW, nullable, slot, None, None))
        elif kind == "timestamp":
            # a batch shares its received_at and rated_at: remember the last value
            namespace[f"_t{i}"] = [(None, None)]
            lines += [*_read_timestamp("n", indent),
                      f"{indent}last = _t{i}[0]",
                      f"{indent}if n == last[0]:",
                      f"{indent}    {out} = last[1]",
                      f"{indent}else:",
                      f"{indent}    {out} = _EPOCH + _td(microseconds=n)",
                      f"{indent}    _t{i}[0] = (n, {out})"]
            ops.append((_TIMESTAMP, nullable, slot, None, None))
        elif kind == "decimal":
            precision, scale = parameter
            context = decimal.Context(prec=precision)
            namespace[f"_d{i}"] = {}
            namespace[f"_mk{i}"] = (lambda ctx, sc: lambda s: ctx.create_decimal(
                int.from_bytes(s, "big", signed=True)).scaleb(-sc, ctx))(context, scale)
            lines += [*_read_sized(indent),
                      f"{indent}{out} = _d{i}.get(s)",
                      f"{indent}if {out} is None:",
                      f"{indent}    {out} = _mk{i}(s)",
                      f"{indent}    if _len(_d{i}) >= {_CACHE_LIMIT}:",
                      f"{indent}        _d{i}.clear()",
                      f"{indent}    _d{i}[s] = {out}"]
            ops.append((_DECIMAL, nullable, slot, namespace[f"_d{i}"], namespace[f"_mk{i}"]))
        elif kind == "map":
            lines += [f"{indent}{out}, pos = _map(buf, pos)"]
            ops.append((_MAP, nullable, slot, None, None))
    if row is not None:
        by_name = dict(names)
        values = ", ".join([*(by_name[name] for name in only), *(("offset",) if offset_of is not None else ())])
        slots = {name: slot for slot, (name, _) in enumerate(names)}
        out_spec = (*(slots[name] for name in only), *((offset_slot,) if offset_of is not None else ()))
        if isinstance(row, type) and issubclass(row, tuple) and hasattr(row, "_fields"):  # a named tuple:
            namespace["_tnew"] = tuple.__new__  # built as its own __new__ does, without that call
            lines.append(f"    return _tnew(_row, ({values},)), pos")
            mode = _OUT_NAMEDTUPLE
        else:
            lines.append(f"    return _row({values}), pos")
            mode = _OUT_CALL
    else:
        items = ", ".join(f"{name!r}: {out}" for name, out in names)
        lines.append(f"    return {{{items}}}, pos")
        out_spec, mode = tuple(name for name, _ in names), _OUT_DICT
    exec("\n".join(lines), namespace)  # noqa: S102 - code generated from our own schema above
    python = namespace["_fast"]
    if not native_available():
        return python
    try:
        return _avro_native.Decoder(tuple(ops), offset_slot + 1, mode, out_spec, row, python, MIN_MICROS, MAX_MICROS)
    except ValueError:  # a plan it refuses (an offset_of naming no field, say): the generated code
        return python
