"""Containers built from bodies already encoded read back, with fastavro, as the records they hold."""

import io

import fastavro

from schemas.avro_container import ContainerWriter
from schemas.avro_encoder import compile_encoder, zigzag_long

SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"},
                                                    {"name": "m", "type": ["null", {"type": "map", "values": "string"}]}]}
EXTRA = [{"name": "n", "type": "long"}]


def test_bodies_with_appended_fields_read_back_as_whole_records():
    encode = compile_encoder(SCHEMA)
    records = [{"a": "x", "m": None}, {"a": "é" * 300, "m": {"k": "v"}}, {"a": "", "m": {}}]
    bodies = [encode(r) + zigzag_long(n) for n, r in enumerate(records, start=-1)]
    writer = ContainerWriter(SCHEMA, EXTRA)
    got = list(fastavro.reader(io.BytesIO(writer.container(bodies, len(bodies)))))
    assert got == [{**r, "n": n} for n, r in enumerate(records, start=-1)]


def test_an_empty_container_holds_no_record():
    assert list(fastavro.reader(io.BytesIO(ContainerWriter(SCHEMA, EXTRA).container([], 0)))) == []
