"""The Postgres ledger sink: `ledger.entries` → the append-only `ledger_entries` table.

One consumer group (LEDGER_SINK_GROUP), batches of LEDGER_SINK_BATCH_ROWS rows or
LEDGER_SINK_BATCH_MS (sinks/batch_consumer.py: offsets after the write, retries while Postgres is
down). Each batch is written in ONE transaction, and a replayed batch changes nothing (entry ids
are deterministic):
- first as a plain COPY (binary format) into the table: almost every batch holds only new entries;
- if that breaks the primary key (a batch read again after a crash, an entry the wallet agent
  emitted again), the transaction is rolled back and the batch goes through a temporary staging
  table: COPY there, then `INSERT ... SELECT ... ON CONFLICT (entry_id) DO NOTHING`.
The plain COPY writes each row once instead of twice and sorts nothing (docs/operations/performance.md,
"Sinks").
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import psycopg
from psycopg.types.json import set_json_dumps

from openmonetize.settings import Settings
from sinks.batch_consumer import BatchConsumer, SinkConfig, reader_codec_with_retry

COLUMNS = (
    "entry_id", "customer_id", "wallet_id", "kind", "amount", "balance_after", "event_id", "command_id",
    "grant_id", "reservation_id", "burn_table_version", "reason", "metadata", "occurred_at", "applied_at",
    "kafka_partition", "kafka_offset",
)
# Postgres types of COLUMNS, for COPY's binary format: numerics and timestamps cross as binary
# instead of text Postgres must parse, and psycopg's C dumpers build them (docs/operations/performance.md).
TYPES = ("text", "text", "text", "text", "numeric", "numeric", "text", "text", "text", "text", "int4", "text",
         "jsonb", "timestamptz", "timestamptz", "int4", "int8")
_COLS = ", ".join(COLUMNS)
STAGE_SQL = ("CREATE TEMP TABLE IF NOT EXISTS ledger_entries_stage "
             "(LIKE ledger_entries INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
INSERT_SQL = (f"INSERT INTO ledger_entries ({_COLS}) "
              f"SELECT DISTINCT ON (entry_id) {_COLS} FROM ledger_entries_stage ORDER BY entry_id "
              "ON CONFLICT (entry_id) DO NOTHING")


def _metadata_value(metadata: Mapping | None, key: str) -> str | None:
    return None if not metadata else metadata.get(key)


def to_row(entry: Mapping, partition: int, offset: int) -> tuple:
    """A decoded ledger.entries record as a `ledger_entries` row, in COLUMNS order."""
    metadata = entry.get("metadata")
    version = _metadata_value(metadata, "burn_table_version")
    return (
        entry["entry_id"], entry["customer_id"], entry["wallet_id"], entry["kind"], entry["amount"],
        entry["balance_after"], entry.get("event_id"), entry.get("command_id"), entry.get("grant_id"),
        entry.get("reservation_id") or _metadata_value(metadata, "reservation_id"),
        int(version) if version not in (None, "") else None,
        entry.get("reason"),
        orjson.dumps(dict(metadata)).decode() if metadata else None,
        entry["occurred_at"], entry["recorded_at"], partition, offset,
    )


def write_batch(conn: psycopg.Connection, rows: list[tuple]) -> int:
    """Write `rows` in one transaction; returns how many were new (the rest were already there)."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            _copy(cur, "ledger_entries", rows)
            return len(rows)
    except psycopg.errors.UniqueViolation:
        pass  # some are there already: rolled back, written again without them
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(STAGE_SQL)
        _copy(cur, "ledger_entries_stage", rows)
        cur.execute(INSERT_SQL)
        return cur.rowcount


def _copy(cur: psycopg.Cursor, table: str, rows: list[tuple]) -> None:
    with cur.copy(f"COPY {table} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(TYPES)
        for row in rows:
            copy.write_row(row)


def connect(database_url: str) -> psycopg.Connection:
    """A connection for `write_batch`: `metadata` is JSON text already (orjson, in `to_row`), so
    its jsonb dumper passes the text through instead of encoding it as a JSON string."""
    conn = psycopg.connect(database_url, connect_timeout=5)
    set_json_dumps(_json_text, context=conn)
    return conn


def _json_text(value: str) -> str:
    return value


class LedgerStore:
    """`ledger_entries` in Postgres, one transaction per batch."""

    name = "ledger"
    # A value Postgres cannot hold (a NUL in a text column) or a constraint it breaks: that row,
    # never the batch, and never worth a retry. Anything else (a connection, a server restart)
    # waits for Postgres to come back.
    refused = (psycopg.DataError, psycopg.IntegrityError)
    unavailable = (psycopg.Error,)

    def __init__(self, settings: Settings):
        self.settings = settings
        self._conn: psycopg.Connection | None = None

    @staticmethod
    def read(codec, value: bytes, partition: int, offset: int) -> tuple[tuple, Mapping]:
        entry = codec.decode(value)
        return to_row(entry, partition, offset), entry

    def write(self, rows: list[tuple]) -> int:
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.settings.database_url)
            return write_batch(self._conn, rows)
        except psycopg.Error:
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn = None
            raise

    def assigned(self, partitions: list[int]) -> None:
        pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def run(settings: Settings) -> None:
    from schemas.topics import topics

    s = settings
    spec = topics(s).ledger_entries
    config = SinkConfig(spec.name, s.ledger_sink_group, s.ledger_sink_batch_rows, s.ledger_sink_batch_ms,
                        s.ledger_sink_max_backoff_s, s.ledger_sink_metrics_port)
    codec = reader_codec_with_retry(s, spec, LedgerStore.name, s.ledger_sink_max_backoff_s)
    BatchConsumer(s, config, codec, LedgerStore(s)).run()
