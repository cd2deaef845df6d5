"""Avro records in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

Ordinary Kafka clients (confluent-kafka's AvroSerializer, Java's KafkaAvroSerializer) write this
framing, so a customer's own producer can write `usage.events` with the schema registered in our
registry. Decoding resolves whatever registered schema a record was written with into the
schema this code was built for (Avro schema resolution), so records written before a compatible
schema change keep decoding.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.avro_decoder import compile_decoder
from schemas.avro_encoder import compile_encoder

AVRO_DIR = Path(__file__).resolve().parent / "avro"
MAGIC = 0
_HEADER = struct.Struct(">bI")


class DecodeError(ValueError):
    """A record that is not a decodable Confluent-framed Avro record; the message says why."""


class SchemaResolver(Protocol):
    """Looks up a registered schema's text by its global id (the schema registry)."""

    def schema_by_id(self, schema_id: int) -> str: ...


@lru_cache(maxsize=None)
def schema_text(file_name: str) -> str:
    """The text of one of our schemas, as it is registered."""
    return (AVRO_DIR / file_name).read_text()


def schema_json(file_name: str) -> dict:
    return json.loads(schema_text(file_name))


class AvroCodec:
    """Encodes records with one of our schemas (registered as `schema_id`) and decodes records
    written with any registered schema into it.

    Encoding uses the specialised encoder compiled from the schema (schemas/avro_encoder.py,
    byte-identical to fastavro and several times faster) when the schema's shape allows, else
    fastavro; decoding a record written with our own schema likewise uses the compiled decoder
    (schemas/avro_decoder.py). `cached_fields` names low-cardinality string fields worth caching.
    """

    def __init__(
        self,
        schema: dict | str,
        schema_id: int,
        resolver: SchemaResolver | None = None,
        cached_fields: tuple[str, ...] = (),
    ):
        raw = json.loads(schema) if isinstance(schema, str) else schema
        self.raw_schema = raw
        self.cached_fields = cached_fields
        self.schema = parse_schema(raw)
        self.schema_id = schema_id
        self.resolver = resolver
        self.header = _HEADER.pack(MAGIC, schema_id)  # what a record written with our schema starts with
        self._fast = compile_encoder(raw, cached_fields)
        self._fast_decode = compile_decoder(raw, cached_fields)
        self._writers: dict[int, Any] = {schema_id: None}  # None: written with our schema, no resolution
        # Every header of records written with our very schema, read by the compiled decoder: our
        # id, and any other id the registry turns out to hold our schema as. A reader that
        # started before any writer registered the schema knows it by id 0 only (reader_codec):
        # the first record of the registered id is resolved once (`_writer_schema`), and the rest
        # are read as ours. Before, it resolved every record through fastavro, ~4x the CPU, until
        # restarted (the sinks of a fresh `make up` stack did).
        self.own_headers = {self.header}

    def encode(self, record: dict) -> bytes:
        if self._fast is not None:
            return self.header + self._fast(record)
        out = io.BytesIO()
        out.write(self.header)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict:
        record = _fast_path(self._fast_decode, self, data)  # written with our schema: no resolution
        if record is not _WHOLE:
            return record
        if len(data) < _HEADER.size:
            raise DecodeError(f"record of {len(data)} bytes is shorter than the 5-byte Confluent header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"magic byte is {magic}, expected {MAGIC} (Confluent wire format)")
        writer = self._writer_schema(schema_id)
        body = io.BytesIO(data)
        body.seek(_HEADER.size)
        try:
            if writer is None:
                record = schemaless_reader(body, self.schema, None)
            else:
                record = schemaless_reader(body, writer, self.schema)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for corrupt input
            raise DecodeError(f"Avro body does not decode with schema id {schema_id}: {exc}") from exc
        if body.tell() != len(data):
            raise DecodeError(f"{len(data) - body.tell()} trailing bytes after the Avro body")
        return record

    def projection(self, fields: tuple[str, ...]) -> AvroProjection:
        """A decoder of this topic's records that returns only `fields` (see AvroProjection)."""
        return AvroProjection(self, fields)

    def rows(self, fields: tuple[str, ...], row: Callable[..., Any], offset_of: str | None = None) -> RowProjection:
        """A decoder of this topic's records into `row(*values of fields)`, that refuses exactly
        what `decode` refuses (see RowProjection)."""
        return RowProjection(self, fields, row, offset_of)

    def _writer_schema(self, schema_id: int) -> Any:
        if schema_id in self._writers:
            return self._writers[schema_id]
        if self.resolver is None:
            raise DecodeError(f"schema id {schema_id} is not ours and no schema registry is configured")
        try:
            text = self.resolver.schema_by_id(schema_id)
        except Exception as exc:  # noqa: BLE001 - a registry miss or outage: say which id
            raise DecodeError(f"schema id {schema_id} could not be resolved: {exc}") from exc
        raw = json.loads(text)
        if raw == self.raw_schema:  # ours, registered under another id: read as ours
            self._writers[schema_id] = None
            self.own_headers.add(_HEADER.pack(MAGIC, schema_id))
            return None
        writer = parse_schema(raw)
        self._writers[schema_id] = writer
        return writer


class AvroProjection:
    """Decodes only some fields of a codec's records, for a reader that needs a few of many (the
    wallet agent reads 9 of a rated record's 33): the others' values are never built.

    A record written with the codec's own schema id is read by a compiled decoder that steps
    over the other fields without decoding them, so it does not check them (UTF-8 included):
    use it on records our own processes wrote from records already decoded whole. Any other
    writer schema, or a body the fast path cannot read, is decoded whole by the codec (which
    raises DecodeError for a corrupt one) and the fields taken from it.
    """

    def __init__(self, codec: AvroCodec, fields: tuple[str, ...]):
        self.codec = codec
        self.fields = fields
        self._fast = compile_decoder(codec.raw_schema, codec.cached_fields, only=fields)

    def decode(self, data: bytes) -> dict:
        record = _fast_path(self._fast, self.codec, data)
        if record is not _WHOLE:
            return record
        whole = self.codec.decode(data)
        return {name: whole[name] for name in self.fields}


_WHOLE = object()  # _fast_path's answer where fastavro must decode the whole record


def _fast_path(fast: Callable | None, codec: AvroCodec, data: bytes) -> Any:
    """The compiled decode of `data`, or _WHOLE: no fast path, another writer schema, or input
    it does not read to exactly its end (corrupt or odd: fastavro's whole decode says why)."""
    if fast is not None and data[:_HEADER.size] in codec.own_headers:
        try:
            record, end = fast(data, _HEADER.size)
            if end == len(data):
                return record
        except Exception:  # noqa: BLE001 - see above
            pass
    return _WHOLE


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class RowProjection:
    """Decodes some fields of a codec's records into a row (`row(*values)`, the values in
    `fields`' order; a named tuple, say), timestamps as integers of microseconds from the epoch,
    for a reader that wants a few fields of every record and no dict: a replay's pass.

    Unlike AvroProjection it checks the fields it steps over as `decode` would (UTF-8, ranges),
    so a record is refused (DecodeError) exactly when `decode` refuses it: usable on records
    anyone wrote. A record of another writer schema, or one the fast path does not read, is
    decoded whole by the codec and the row taken from it. With `offset_of`, the row has one more
    value, last: where that field starts in the record (the header included), or None for a
    record decoded whole (another writer schema: its bytes do not compare with ours).
    """

    def __init__(self, codec: AvroCodec, fields: tuple[str, ...], row: Callable[..., Any],
                 offset_of: str | None = None):
        self.codec = codec
        self.fields = fields
        self.row = row
        self._extra = (None,) if offset_of is not None else ()
        kinds = {f["name"]: f["type"] for f in codec.raw_schema["fields"]}
        self._timestamps = frozenset(name for name in fields if _is_timestamp(kinds[name]))
        self._fast = compile_decoder(codec.raw_schema, codec.cached_fields, only=fields, row=row,
                                     raw_timestamps=True, check_skipped=True, offset_of=offset_of)

    def decode(self, data: bytes) -> Any:
        record = _fast_path(self._fast, self.codec, data)
        if record is not _WHOLE:
            return record
        whole = self.codec.decode(data)
        return self.row(*(_micros(whole[name]) if name in self._timestamps else whole[name] for name in self.fields),
                        *self._extra)


def _is_timestamp(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_is_timestamp(branch) for branch in schema)
    return isinstance(schema, dict) and schema.get("logicalType") in ("timestamp-micros", "timestamp-millis")


def _micros(at: datetime | None) -> int | None:
    return None if at is None else (at - _EPOCH) // _MICROSECOND
