"""An Avro object container file (the `Avro` input format of ClickHouse) made of bodies that are
already encoded: no record is decoded or encoded again to build it.

The ClickHouse sink receives usage.rated records as Confluent-framed Avro bodies. Decoding each
into Python values for clickhouse-connect to serialise them again cost ~30 µs of the sink's CPU
per row; handing ClickHouse the bodies in a container (its own C++ Avro reader maps fields to
columns by name) costs a concatenation. Each body gets `extra` fields appended (an Avro record is
its fields' encodings one after the other), so the container's schema is the bodies' schema with
those fields at its end.

Layout (Avro 1.11 spec, "Object Container Files"): magic `Obj\\x01`, a metadata map holding the
schema and the codec ("null": ClickHouse's HTTP transfer is compressed already), a 16-byte sync
marker, then blocks of (record count, byte size, records, sync marker).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from schemas.avro_encoder import zigzag_long

MAGIC = b"Obj\x01"


def _bytes(data: bytes) -> bytes:
    return zigzag_long(len(data)) + data


class ContainerWriter:
    """Containers of bodies written with `schema`, each followed by the fields in `extra_fields`
    (Avro field definitions, encoded by the caller after each body)."""

    def __init__(self, schema: dict, extra_fields: list[dict]):
        full = {**schema, "fields": [*schema["fields"], *extra_fields]}
        self.schema = full
        self.sync = os.urandom(16)
        metadata = {"avro.schema": json.dumps(full, separators=(",", ":")).encode(), "avro.codec": b"null"}
        self.header = (MAGIC + zigzag_long(len(metadata))
                       + b"".join(_bytes(k.encode()) + _bytes(v) for k, v in metadata.items())
                       + zigzag_long(0) + self.sync)

    def container(self, records: Iterable[bytes], count: int) -> bytes:
        """One container holding `count` encoded records (body and extra fields each), in one block."""
        block = b"".join(records)
        return self.header + zigzag_long(count) + zigzag_long(len(block)) + block + self.sync
