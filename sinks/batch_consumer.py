"""What both sinks share: read a topic in batches, hand each batch to a store, commit the Kafka
offsets only after the store has it.

Records are gathered into batches (`batch_rows` rows, or `batch_ms` after the first one,
whichever comes first). Offsets are committed synchronously after `store.write` returned, so a
crash at any point replays at most the batch; each store makes that replay harmless (Postgres:
deterministic entry ids; ClickHouse: see sinks/usage_clickhouse.py).

A record the store refuses for its content (`store.refused`: a data error, never an outage) is
isolated from the rest of its batch and sent to usage.dlq (sinks/dead_letters.py); the batch goes on.
While the store is down (`store.unavailable` errors) the batch is retried with capped
exponential backoff; the partitions are paused meanwhile, and the consumer keeps polling so it
stays in its group. If the partitions are taken away during an outage, the batch is abandoned
uncommitted: their new owner re-reads it. SIGTERM finishes the batch in hand, commits it and exits.
One batch is written in a background thread while the next is read (see BatchConsumer).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from openmonetize import metrics
from openmonetize.kafka_clients import RECONNECT
from openmonetize.logs import get_logger
from sinks.dead_letters import DeadLetterError, DeadLetters, Source, isolate

log = get_logger(__name__)

ROWS = Counter("openmonetize_sink_rows_total", "Records handled by a sink", ["sink", "outcome"])
BATCHES = Counter("openmonetize_sink_batches_total", "Batches a sink stored and committed", ["sink"])
BATCH_SIZE = Histogram("openmonetize_sink_batch_rows", "Records per stored batch", ["sink"],
                       buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000))
BATCH_SECONDS = Histogram("openmonetize_sink_batch_seconds", "Time to store one batch", ["sink"])
ERRORS = Counter("openmonetize_sink_errors_total", "Failures of a sink", ["sink", "kind"])
LAG = Gauge("openmonetize_sink_lag", "Records behind the high watermark at the last batch",
            ["sink", "topic", "partition"])


class Store(Protocol):
    """Where a sink writes. `write` returns how many of `rows` were new."""

    name: str  # "ledger", "clickhouse": log event prefix and metric label
    unavailable: tuple[type[BaseException], ...]  # errors that mean "down: retry later"
    refused: tuple[type[BaseException], ...]  # errors that mean "never: these rows' content" (dead_letters.py)

    def read(self, codec, value: bytes, partition: int, offset: int) -> tuple[Any, Mapping]:
        """The row of one record value, and the fields read from it (event_id and customer_id,
        when there, name a dead letter). Raises for a record that does not decode."""

    def write(self, rows: list) -> int: ...

    def assigned(self, partitions: list[int]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkConfig:
    topic: str
    group: str
    batch_rows: int
    batch_ms: int
    max_backoff_s: float
    metrics_port: int  # 0: not served


def commit_positions(positions: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Per partition, the offset to commit once records at (partition, offset) are stored:
    the highest offset + 1."""
    found: dict[int, int] = {}
    for partition, offset in positions:
        found[partition] = max(found.get(partition, -1), offset + 1)
    return found


@dataclass
class _Batch:
    rows: list
    positions: list[tuple[int, int]]  # (partition, offset) of every record read, stored or skipped
    sources: list[Source] = field(default_factory=list)  # each row's record, for its dead letter
    refused: int = 0  # rows the store refused for their content (sent as dead letters)
    oldest_ms: int | None = None  # the earliest Kafka timestamp among them, for the stage latency


class BatchConsumer:
    """One batch is written in a background thread while the next one is read and decoded: the
    store's round trip overlaps our CPU work. Batches are still written one after the other, in
    order, and a batch's offsets are committed only once it is stored."""

    def __init__(self, settings, config: SinkConfig, codec, store: Store):
        self.settings, self.config, self.codec, self.store = settings, config, codec, store
        self.name = store.name
        self.dead_letters = DeadLetters(settings, f"sink-{store.name}", config.topic, codec.resolver)
        self.retried = (*store.unavailable, DeadLetterError)  # what waits for the store (or Kafka) to come back
        self.stopping = False
        self._batch = _Batch([], [])
        self._abandon = False
        self._retrying = False  # a batch is being retried while its store is away (_store)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-writer")
        self._inflight: tuple[_Batch, Future] | None = None

    def _event(self, what: str) -> str:
        return f"{self.name}_sink_{what}"

    # --- lifecycle ---------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        if self.config.metrics_port:
            start_http_server(self.config.metrics_port, addr=self.settings.metrics_host)
        self.consumer = Consumer({
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "group.id": self.config.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            # A killed sink's restart waits out the dead member's session before it is given the
            # partitions: librdkafka's 45 s kept the soak's killed sinks away ~47 s.
            "session.timeout.ms": int(self.settings.sink_session_timeout_s * 1000),
            "heartbeat.interval.ms": int(self.settings.sink_session_timeout_s * 1000 / 4),
            **RECONNECT,
        })
        self.consumer.subscribe([self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info(self._event("started"), topic=self.config.topic, group=self.config.group,
                 batch_rows=self.config.batch_rows, batch_ms=self.config.batch_ms)
        try:
            while not self.stopping:
                self._fill()
                if self._batch.positions:
                    self._finish_inflight()
                    if self._abandon:  # revoked while the batch before it was retried
                        self._batch = _Batch([], [])
                    else:
                        self._submit()
                elif self._inflight is not None:  # idle: commit the batch written meanwhile
                    self._finish_inflight()
        finally:
            self._finish_inflight(final=True)
            if self._batch.positions and not self._abandon:
                self._store(self._batch, final=True)
            self.consumer.close()
            self._writer.shutdown()
            self.store.close()
            self.dead_letters.close()
            log.info(self._event("stopped"))

    def _request_stop(self, signum, _frame) -> None:
        log.info(self._event("stopping"), signal=signal.Signals(signum).name)
        self.stopping = True

    def _on_assign(self, _consumer, partitions) -> None:
        self.store.assigned([p.partition for p in partitions])

    def _on_revoke(self, _consumer, partitions) -> None:
        # The batch in flight is finished and committed while we still own its partitions;
        # one that fails is left uncommitted, like the batch being read: the next owner re-reads both.
        self._finish_inflight(revoking=True)
        if self._batch.positions or self._retrying:
            log.info(self._event("batch_abandoned"), rows=len(self._batch.rows), retrying=self._retrying,
                     partitions=[p.partition for p in partitions])
            self._abandon = True

    # --- consume -----------------------------------------------------------------------
    def _fill(self) -> None:
        limit = self.config.batch_rows
        deadline = None
        while len(self._batch.rows) < limit and not self.stopping:
            if deadline is None:
                if self._inflight is not None and self._inflight[1].done():
                    return  # nothing new to read: run() commits the written batch instead of waiting for more
                # The batch's first record as soon as it comes: `consume(n, timeout)` waits for n
                # records or the whole timeout, which held a backlog's last partial batch back by
                # 0.5 s (and every batch of a load under `batch_rows` per 0.5 s).
                first = self.consumer.poll(0.5)
                messages = [] if first is None else [first]
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return
                messages = self.consumer.consume(min(limit - len(self._batch.rows), 10_000), timeout=timeout)
            for message in messages:
                if message.error():
                    ERRORS.labels(self.name, "kafka").inc()
                    log.warning(self._event("kafka_error"), error=str(message.error()))
                    continue
                if message.value() is None:
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self.config.batch_ms / 1000
                    self._abandon = False
                partition, offset = message.partition(), message.offset()
                self._batch.positions.append((partition, offset))
                _kind, timestamp_ms = message.timestamp()
                if timestamp_ms > 0 and (self._batch.oldest_ms is None or timestamp_ms < self._batch.oldest_ms):
                    self._batch.oldest_ms = timestamp_ms
                try:
                    row, fields = self.store.read(self.codec, message.value(), partition, offset)
                    self._batch.rows.append(row)
                    self._batch.sources.append(Source(partition, offset, message.key(), message.value(),
                                                      fields.get("event_id"), fields.get("customer_id")))
                except Exception as exc:  # noqa: BLE001 - a record we cannot read must not stop the sink
                    ERRORS.labels(self.name, "decode").inc()
                    ROWS.labels(self.name, "undecodable").inc()
                    log.error(self._event("undecodable"), partition=partition, offset=offset, error=repr(exc))
            if self._abandon:
                self._batch = _Batch([], [])
                return

    # --- write -------------------------------------------------------------------------
    def _submit(self) -> None:
        batch, self._batch = self._batch, _Batch([], [])
        self._inflight = (batch, self._writer.submit(self._timed_write, batch))

    def _timed_write(self, batch: _Batch) -> tuple[int, float]:
        """Write the batch; rows the store refuses for their content become dead letters."""
        start = time.monotonic()
        if not batch.rows:
            return 0, 0.0
        inserted, refused = isolate(self.store.write, batch.rows, self.store.refused)
        if refused:
            self.dead_letters.send([(batch.sources[i], exc) for i, exc in refused])
            ROWS.labels(self.name, "unstorable").inc(len(refused))
        batch.refused = len(refused)
        return inserted, time.monotonic() - start

    def _finish_inflight(self, final: bool = False, revoking: bool = False) -> None:
        """Wait for the batch in flight; commit it, or retry it here when the store was away."""
        if self._inflight is None:
            return
        (batch, future), self._inflight = self._inflight, None
        try:
            inserted, seconds = future.result()
        except self.retried as exc:
            self._failed(batch, 1, exc, 0.1)
            if not revoking:
                self._store(batch, final=final, attempts=1)
            return
        self._stored(batch, inserted, seconds, attempts=1)

    def _store(self, batch: _Batch, final: bool = False, attempts: int = 0) -> None:
        """Write `batch` now, retrying while the store is away (partitions paused meanwhile)."""
        backoff, paused = 0.1, []
        self._retrying = True
        try:
            while True:
                attempts += 1
                try:
                    inserted, seconds = self._timed_write(batch)
                    break
                except self.retried as exc:
                    self._failed(batch, attempts, exc, backoff)
                    if (final and attempts >= 3) or (self.stopping and not final):
                        # Stopping while the store is away: the batch stays uncommitted, and the
                        # next run (or the partitions' next owner) reads it again.
                        log.warning(self._event("exit_uncommitted"), rows=len(batch.rows))
                        return
                    if not paused and not final:
                        paused = self.consumer.assignment()
                        self.consumer.pause(paused)
                    self._keep_alive(backoff) if not final else time.sleep(backoff)
                    backoff = min(backoff * 2, self.config.max_backoff_s)
                    if self._abandon:  # revoked meanwhile: the next owner writes it
                        self._resume(paused)
                        return
        finally:
            self._retrying = False
        self._stored(batch, inserted, seconds, attempts)
        self._resume(paused)

    def _keep_alive(self, timeout: float) -> None:
        """Poll while a batch is retried, so that the group keeps us. Nothing comes from the paused
        partitions; but a rebalance meanwhile assigns partitions unpaused, and a record read
        from one is put back (seek) for the next batch, never dropped."""
        for message in self.consumer.consume(1, timeout=timeout):
            if message.error() is None:
                self.consumer.seek(TopicPartition(message.topic(), message.partition(), message.offset()))

    def _failed(self, batch: _Batch, attempt: int, exc: BaseException, retry_in_s: float) -> None:
        ERRORS.labels(self.name, "store").inc()
        log.warning(self._event("write_failed"), rows=len(batch.rows), attempt=attempt,
                    error=str(exc).strip()[:500], retry_in_s=retry_in_s)

    def _stored(self, batch: _Batch, inserted: int, seconds: float, attempts: int) -> None:
        BATCH_SECONDS.labels(self.name).observe(seconds)
        BATCH_SIZE.labels(self.name).observe(len(batch.rows))
        BATCHES.labels(self.name).inc()
        ROWS.labels(self.name, "inserted").inc(inserted)
        ROWS.labels(self.name, "duplicate").inc(len(batch.rows) - inserted - batch.refused)
        positions = commit_positions(batch.positions)
        try:
            self.consumer.commit(offsets=[TopicPartition(self.config.topic, p, o) for p, o in positions.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            # Rows are stored; the next owner replays them harmlessly.
            ERRORS.labels(self.name, "commit").inc()
            log.warning(self._event("commit_failed"), error=str(exc))
        self._lag(positions)
        metrics.observe_stage_latency(f"sink-{self.name}", batch.oldest_ms / 1000 if batch.oldest_ms else None)
        log.info(self._event("batch"), rows=len(batch.rows), inserted=inserted, seconds=round(seconds, 4),
                 attempts=attempts)

    def _resume(self, paused) -> None:
        if paused:
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            self.consumer.resume([tp for tp in paused if (tp.topic, tp.partition) in owned])

    def _lag(self, positions: dict[int, int]) -> None:
        for partition, position in positions.items():
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.config.topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                LAG.labels(self.name, self.config.topic, str(partition)).set(max(high - position, 0))


def reader_codec_with_retry(settings, spec, store_name: str, max_backoff_s: float):
    """A decoder that registers nothing; retried until the schema registry (Postgres, or the
    registry at SCHEMA_REGISTRY_URL) answers."""
    import psycopg

    from schemas.topic_codecs import reader_codec
    from schemas.registry import RegistryError
    from schemas.registry_client import RegistryUnreachable, open_registry

    registry = open_registry(settings)
    backoff = 0.1
    while True:
        try:
            return reader_codec(registry, spec)
        except (psycopg.Error, RegistryUnreachable, RegistryError) as exc:
            ERRORS.labels(store_name, "registry").inc()
            log.warning(f"{store_name}_sink_registry_unreachable", error=str(exc).strip(), retry_in_s=backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
