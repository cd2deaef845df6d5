"""The Avro codecs of a replay: usage.events to read, wallet.commands to write (and read back),
ledger.entries to see what the ledger sink has yet to write.

Decoding may need the schema registry (a record written with an older schema version); the
registry is reached over a Postgres connection opened in the process that needs it, so the
forked readers never share their parent's connection.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from schemas.codec import AvroCodec, registered_codec
from schemas.registry import SchemaRegistry
from schemas.topics import Topics
from schemas.usage_event import LOW_CARDINALITY_FIELDS


class _OneConnection:
    """One connection in the shape SchemaRegistry takes (a pool's `connection()`)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    @contextmanager
    def connection(self):
        yield self.conn


class ProcessRegistry:
    """The schema registry over a connection of the calling process, opened on first use."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._registry: SchemaRegistry | None = None
        self._pid = 0

    def _current(self) -> SchemaRegistry:
        if self._registry is None or self._pid != os.getpid():
            conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=10)
            self._registry, self._pid = SchemaRegistry(_OneConnection(conn)), os.getpid()
        return self._registry

    def schema_by_id(self, schema_id: int) -> str:
        return self._current().schema_by_id(schema_id)

    def register(self, subject: str, text: str) -> int:
        return self._current().register(subject, text)


@dataclass(frozen=True)
class ReplayCodecs:
    usage_event: AvroCodec
    wallet_command: AvroCodec
    ledger_entry: AvroCodec


def replay_codecs(database_url: str, registry_topics: Topics) -> ReplayCodecs:
    registry = ProcessRegistry(database_url)

    def codec(spec, cached=()) -> AvroCodec:
        return registered_codec(registry, spec, cached)

    return ReplayCodecs(codec(registry_topics.usage_events, LOW_CARDINALITY_FIELDS),
                        codec(registry_topics.wallet_commands), codec(registry_topics.ledger_entries))
