"""Publishing catalog records to `billing.catalog`, acknowledged (every process reads them from there)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Producer

from openmonetize.catalog.json_codec import encode, key_of
from openmonetize.catalog.records import Record
from openmonetize.settings import Settings
from schemas.topics import topics


class CatalogPublishError(RuntimeError):
    """Kafka did not acknowledge every record in time."""


class CatalogPublisher:
    """Publishes catalog records and waits for Kafka's acknowledgement (acks=all, idempotent)."""

    def __init__(self, settings: Settings, timeout_s: float | None = None):
        self.topic = topics(settings).billing_catalog.name
        self.timeout_s = timeout_s if timeout_s is not None else settings.kafka_producer_timeout_ms / 1000
        self._producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "message.timeout.ms": int(self.timeout_s * 1000),
        })

    def publish(self, records: Iterable[Record]) -> int:
        """Publish the records; return how many once all are acknowledged, else raise."""
        errors: list = []
        done = [0]

        def delivered(err, _msg) -> None:
            done[0] += 1
            if err is not None:
                errors.append(err)

        count = 0
        for record in records:
            self._produce(key_of(record).encode(), encode(record), delivered)
            count += 1
        deadline = time.monotonic() + self.timeout_s + 1
        while done[0] < count:
            if time.monotonic() > deadline:
                raise CatalogPublishError(f"{count - done[0]} of {count} catalog records not acknowledged in time")
            self._producer.poll(0.05)  # another thread's poll may serve our callbacks: we only count them
        if errors:
            raise CatalogPublishError(f"{len(errors)} of {count} catalog records not delivered: {errors[0]}")
        return count

    def _produce(self, key: bytes, value: bytes, on_delivery) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full (a large sync): let deliveries drain it
                self._producer.poll(0.1)

    def close(self) -> None:
        self._producer.flush(self.timeout_s)
