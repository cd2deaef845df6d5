"""The Avro codecs of a replay: usage.events to read, wallet.commands to write (and read back),
ledger.entries to see what the ledger sink has yet to write.

Decoding may need the schema registry (a record written with an older schema version); the
registry is opened in the process that needs it (a Postgres connection, or an HTTP client for
SCHEMA_REGISTRY_URL), so the forked readers never share their parent's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg

from schemas.codec import AvroCodec
from schemas.topic_codecs import writer_codec
from schemas.registry_client import CodecRegistry, OneConnection, open_registry
from schemas.topics import Topics


class ProcessRegistry:
    """The codecs' registry (schemas/registry_client.py) opened in the calling process, on first
    use: our store over a connection of this process, or the registry at SCHEMA_REGISTRY_URL."""

    def __init__(self, settings):
        self.settings = settings
        self._registry: CodecRegistry | None = None
        self._pid = 0

    def _current(self) -> CodecRegistry:
        if self._registry is None or self._pid != os.getpid():
            conn = None
            if not self.settings.schema_registry_url:  # our store: over a connection of this process
                conn = OneConnection(psycopg.connect(self.settings.database_url, autocommit=True, connect_timeout=10))
            self._registry, self._pid = open_registry(self.settings, conn), os.getpid()
        return self._registry

    def schema_by_id(self, schema_id: int) -> str:
        return self._current().schema_by_id(schema_id)

    def register(self, subject: str, text: str) -> int:
        return self._current().register(subject, text)

    def lookup(self, subject: str, text: str) -> tuple[int, int]:
        return self._current().lookup(subject, text)


@dataclass(frozen=True)
class ReplayCodecs:
    usage_event: AvroCodec
    wallet_command: AvroCodec
    ledger_entry: AvroCodec


def replay_codecs(settings, registry_topics: Topics) -> ReplayCodecs:
    registry = ProcessRegistry(settings)

    return ReplayCodecs(writer_codec(registry, registry_topics.usage_events),
                        writer_codec(registry, registry_topics.wallet_commands),
                        writer_codec(registry, registry_topics.ledger_entries))
