"""A Kafka producer whose callers await acknowledgement: one per process (the API's ingest,
the stream worker's outputs).

`acks=all` with the idempotent producer: a record is acknowledged once every in-sync replica has
it, and librdkafka's own retries can't duplicate or reorder it. A background thread polls the
producer (serving delivery reports); a request produces all its records in one pass and awaits
ONE future, resolved (through `loop.call_soon_threadsafe`) when the last of its records is
acknowledged or has failed. So the work per request is proportional to the request only.

When Kafka is unreachable a record fails after KAFKA_PRODUCER_TIMEOUT_MS (`message.timeout.ms`);
the request then learns how many of its records were acknowledged before the failure. A full
local queue (BufferError) is waited out for up to QUEUE_FULL_WAIT_S while the poll thread
drains it, then reported as a failure too.

Records are partitioned with murmur2 on the key, as Java clients do, so that a customer's own
producer and this API put the same key on the same partition.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Histogram

from openmonetize.kafka_clients import KEYED, RECONNECT
from openmonetize.logs import get_logger
from openmonetize.settings import Settings

log = get_logger(__name__)

QUEUE_FULL_WAIT_S = 2.0
DELIVERY_SECONDS = Histogram(
    "openmonetize_kafka_delivery_seconds",
    "Time from producing a request's records to the acknowledgement of the last one",
    ["topic"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass(frozen=True)
class Delivery:
    """What became of one request's records: how many were acknowledged, the first error, and
    (for records pinned to a partition) the highest offset acknowledged per partition."""

    acknowledged: int
    error: str | None = None
    last_offsets: dict[int, int] = field(default_factory=dict)


class _Request:
    """Counts one request's delivery reports (called on the poll thread)."""

    __slots__ = ("loop", "future", "pending", "acknowledged", "error", "lock", "last_offsets")

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int):
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.pending = expected
        self.acknowledged = 0
        self.error: str | None = None
        self.lock = threading.Lock()
        self.last_offsets: dict[int, int] = {}

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        with self.lock:
            if err is None:
                self.acknowledged += 1
            elif self.error is None:
                self.error = err.str()
            self.pending -= 1
            done = self.pending == 0
        if done:
            self.loop.call_soon_threadsafe(_resolve, self.future)

    def on_delivery_tracked(self, err: KafkaError | None, msg: Message) -> None:
        """`on_delivery`, also keeping the highest offset acknowledged per partition: only the
        changelog writes need it (pinned to a partition), not every output record."""
        if err is None:
            partition, offset = msg.partition(), msg.offset()
            with self.lock:
                if offset > self.last_offsets.get(partition, -1):
                    self.last_offsets[partition] = offset
        self.on_delivery(err, msg)

    def not_produced(self, count: int, error: str) -> None:
        """Records that never entered the queue will not be reported: stop waiting for them."""
        with self.lock:
            self.error = self.error or error
            self.pending -= count
            done = self.pending == 0
        if done:
            _resolve(self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AckedProducer:
    def __init__(self, settings: Settings, client_id: str, timeout_ms: int | None = None,
                 linger_ms: float | None = None):
        """`timeout_ms`: how long a record may wait for its acknowledgement (message.timeout.ms),
        KAFKA_PRODUCER_TIMEOUT_MS unless given; `linger_ms`: linger.ms, KAFKA_PRODUCER_LINGER_MS
        unless given."""
        self.settings = settings
        self.config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": settings.kafka_producer_linger_ms if linger_ms is None else linger_ms,
            "compression.type": settings.kafka_producer_compression,
            "message.timeout.ms": timeout_ms or settings.kafka_producer_timeout_ms,
            **KEYED,
            "error_cb": self._on_error,
            **RECONNECT,
        }
        self._producer: Producer | None = None
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._producer = Producer(self.config)
        self._running.set()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop polling and flush what is still queued (delivery reports are served by flush)."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join()
        if self._producer is not None:
            left = self._producer.flush(timeout_s)
            if left:
                log.warning("kafka producer closed with undelivered records", undelivered=left)

    def _poll(self) -> None:
        producer = self._producer
        while self._running.is_set():
            producer.poll(0.05)

    @staticmethod
    def _on_error(err: KafkaError) -> None:
        log.warning("kafka producer error", error=err.str(), fatal=err.fatal())

    async def produce(
        self, topic: str, records: Iterable[tuple[bytes, bytes]], count: int, partition: int | None = None
    ) -> Delivery:
        """Produce `count` (key, value) records and wait until each is acknowledged or failed.
        A request's work: the records go out in one pass and ONE future is awaited. `partition`
        places them all there instead of by key (a Faust table's changelog partition)."""
        if count == 0:
            return Delivery(0)
        request = _Request(asyncio.get_running_loop(), count)
        if partition is None:
            produce, callback = self._producer.produce, request.on_delivery
        else:
            produce, callback = partial(self._producer.produce, partition=partition), request.on_delivery_tracked
        started = time.perf_counter()
        produced = 0
        try:
            for key, value in records:
                try:
                    produce(topic, value, key, on_delivery=callback)
                except BufferError:
                    await _produce_when_room(produce, topic, key, value, callback)
                produced += 1
        except Exception as exc:  # noqa: BLE001 - queue still full, unknown topic, oversize record...
            request.not_produced(count - produced, f"{type(exc).__name__}: {exc}")
        await request.future
        DELIVERY_SECONDS.labels(topic).observe(time.perf_counter() - started)
        return Delivery(request.acknowledged, request.error, request.last_offsets)


async def _produce_when_room(produce, topic: str, key: bytes, value: bytes, callback) -> None:
    """The local queue is full: give the poll thread time to drain it, up to QUEUE_FULL_WAIT_S."""
    deadline = time.monotonic() + QUEUE_FULL_WAIT_S
    while True:
        await asyncio.sleep(0.005)
        try:
            produce(topic, value, key, on_delivery=callback)
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise BufferError(f"the producer's local queue stayed full for {QUEUE_FULL_WAIT_S:g}s") from None
