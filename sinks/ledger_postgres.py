"""The Postgres ledger sink: `ledger.entries` → the append-only `ledger_entries` table.

One consumer group (LEDGER_SINK_GROUP). Records are gathered into batches (LEDGER_SINK_BATCH_ROWS
rows or LEDGER_SINK_BATCH_MS after the first one, whichever comes first) and each batch is
written in ONE transaction: COPY into a temporary staging table, then
`INSERT ... SELECT ... ON CONFLICT (entry_id) DO NOTHING`. Kafka offsets are committed
(synchronously) only after Postgres committed, so a crash at any point replays at most the
batch, and the replay changes nothing: entry ids are deterministic.

While Postgres is down the batch is retried with capped exponential backoff (the partitions are
paused meanwhile, and the consumer keeps polling so it stays in its group). If the partitions
are taken away during an outage, the batch is abandoned uncommitted: their new owner re-reads
it. SIGTERM finishes the batch in hand, commits it and exits.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from openmonetize.logs import get_logger
from openmonetize.settings import Settings

log = get_logger(__name__)

COLUMNS = (
    "entry_id", "customer_id", "wallet_id", "kind", "amount", "balance_after", "event_id", "command_id",
    "grant_id", "reservation_id", "burn_table_version", "reason", "metadata", "occurred_at", "applied_at",
    "kafka_partition", "kafka_offset",
)
_COLS = ", ".join(COLUMNS)
STAGE_SQL = ("CREATE TEMP TABLE IF NOT EXISTS ledger_entries_stage "
             "(LIKE ledger_entries INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
INSERT_SQL = (f"INSERT INTO ledger_entries ({_COLS}) "
              f"SELECT DISTINCT ON (entry_id) {_COLS} FROM ledger_entries_stage ORDER BY entry_id "
              "ON CONFLICT (entry_id) DO NOTHING")

ROWS = Counter("openmonetize_ledger_sink_rows_total", "Ledger entries handled by the sink", ["outcome"])
BATCHES = Counter("openmonetize_ledger_sink_batches_total", "Batches committed to Postgres")
BATCH_SIZE = Histogram("openmonetize_ledger_sink_batch_rows", "Entries per written batch",
                       buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000))
BATCH_SECONDS = Histogram("openmonetize_ledger_sink_batch_seconds", "Time to write and commit one batch")
ERRORS = Counter("openmonetize_ledger_sink_errors_total", "Failures of the sink", ["kind"])
LAG = Gauge("openmonetize_ledger_sink_lag", "Records behind the high watermark, per partition, at the last batch",
            ["partition"])


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


def commit_positions(rows: Iterable[tuple]) -> dict[int, int]:
    """Per partition, the offset to commit once `rows` are stored: the highest offset + 1."""
    positions: dict[int, int] = {}
    for row in rows:
        partition, offset = row[-2], row[-1]
        positions[partition] = max(positions.get(partition, -1), offset + 1)
    return positions


def write_batch(conn: psycopg.Connection, rows: list[tuple]) -> int:
    """Write `rows` in one transaction; returns how many were new (the rest were already there)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(STAGE_SQL)
        with cur.copy(f"COPY ledger_entries_stage ({_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(INSERT_SQL)
        return cur.rowcount


@dataclass
class LedgerSink:
    settings: Settings
    topic: str = ""
    stopping: bool = False
    _conn: psycopg.Connection | None = None
    _batch: list[tuple] = field(default_factory=list)
    _abandon: bool = False

    def __post_init__(self) -> None:
        from schemas.topics import topics

        self.spec = topics(self.settings).ledger_entries
        self.topic = self.topic or self.spec.name

    # --- lifecycle ---------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        if self.settings.ledger_sink_metrics_port:
            start_http_server(self.settings.ledger_sink_metrics_port, addr="127.0.0.1")
        self.codec = self._codec()
        self.consumer = Consumer({
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "group.id": self.settings.ledger_sink_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        })
        self.consumer.subscribe([self.topic], on_revoke=self._on_revoke)
        log.info("ledger_sink_started", topic=self.topic, group=self.settings.ledger_sink_group,
                 batch_rows=self.settings.ledger_sink_batch_rows, batch_ms=self.settings.ledger_sink_batch_ms)
        try:
            while not self.stopping:
                self._fill()
                if self._batch:
                    self._flush()
        finally:
            if self._batch and not self._abandon:
                self._flush(final=True)
            self.consumer.close()
            if self._conn is not None:
                self._conn.close()
            log.info("ledger_sink_stopped")

    def _request_stop(self, signum, _frame) -> None:
        log.info("ledger_sink_stopping", signal=signal.Signals(signum).name)
        self.stopping = True

    def _on_revoke(self, _consumer, partitions) -> None:
        if self._batch:
            # Not committed: the partitions' next owner reads these records again.
            log.info("ledger_sink_batch_abandoned", rows=len(self._batch), partitions=[p.partition for p in partitions])
            self._abandon = True

    def _codec(self):
        """A decoder that registers nothing; retried until Postgres (the registry) answers."""
        from psycopg_pool import ConnectionPool

        from openmonetize.dlq import reader_codec
        from schemas.registry import SchemaRegistry

        self._registry_pool = ConnectionPool(self.settings.database_url, min_size=0, max_size=1, open=True)
        backoff = 0.1
        while True:
            try:
                return reader_codec(SchemaRegistry(self._registry_pool), self.spec)
            except psycopg.Error as exc:
                ERRORS.labels("postgres").inc()
                log.warning("ledger_sink_registry_unreachable", error=str(exc).strip(), retry_in_s=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self.settings.ledger_sink_max_backoff_s)

    # --- consume -----------------------------------------------------------------------
    def _fill(self) -> None:
        limit = self.settings.ledger_sink_batch_rows
        deadline = None
        while len(self._batch) < limit and not self.stopping:
            timeout = 0.5 if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                return
            for message in self.consumer.consume(min(limit - len(self._batch), 10_000), timeout=timeout):
                if message.error():
                    ERRORS.labels("kafka").inc()
                    log.warning("ledger_sink_kafka_error", error=str(message.error()))
                    continue
                if message.value() is None:
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self.settings.ledger_sink_batch_ms / 1000
                    self._abandon = False
                try:
                    entry = self.codec.decode(message.value())
                except Exception as exc:  # noqa: BLE001 - a record we cannot read must not stop the ledger
                    ERRORS.labels("decode").inc()
                    ROWS.labels("undecodable").inc()
                    log.error("ledger_sink_undecodable", partition=message.partition(), offset=message.offset(),
                              error=repr(exc))
                    continue
                self._batch.append(to_row(entry, message.partition(), message.offset()))
            if self._abandon:
                self._batch.clear()
                return

    # --- write -------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.settings.database_url, connect_timeout=5)
        return self._conn

    def _flush(self, final: bool = False) -> None:
        rows, backoff, paused = self._batch, 0.1, []
        attempts = 0
        while True:
            attempts += 1
            start = time.monotonic()
            try:
                inserted = write_batch(self._connection(), rows)
                break
            except psycopg.Error as exc:
                ERRORS.labels("postgres").inc()
                log.warning("ledger_sink_write_failed", rows=len(rows), attempt=attempts, error=str(exc).strip(),
                            retry_in_s=backoff)
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._conn = None
                if final and attempts >= 3:
                    log.warning("ledger_sink_exit_uncommitted", rows=len(rows))
                    return
                if not paused and not final:
                    paused = self.consumer.assignment()
                    self.consumer.pause(paused)
                # Keep polling (nothing comes: the partitions are paused) so the group keeps us.
                self.consumer.consume(1, timeout=backoff) if not final else time.sleep(backoff)
                backoff = min(backoff * 2, self.settings.ledger_sink_max_backoff_s)
                if self._abandon:
                    self._batch = []
                    self._resume(paused)
                    return
        seconds = time.monotonic() - start
        BATCH_SECONDS.observe(seconds)
        BATCH_SIZE.observe(len(rows))
        BATCHES.inc()
        ROWS.labels("inserted").inc(inserted)
        ROWS.labels("duplicate").inc(len(rows) - inserted)
        positions = commit_positions(rows)
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in positions.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            # Rows are stored; the next owner replays them harmlessly.
            ERRORS.labels("commit").inc()
            log.warning("ledger_sink_commit_failed", error=str(exc))
        self._lag(positions)
        log.info("ledger_sink_batch", rows=len(rows), inserted=inserted, seconds=round(seconds, 4),
                 attempts=attempts)
        self._batch = []
        self._resume(paused)

    def _resume(self, paused) -> None:
        if paused:
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            self.consumer.resume([tp for tp in paused if (tp.topic, tp.partition) in owned])

    def _lag(self, positions: dict[int, int]) -> None:
        for partition, position in positions.items():
            try:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                LAG.labels(str(partition)).set(max(high - position, 0))


def run(settings: Settings) -> None:
    LedgerSink(settings).run()
