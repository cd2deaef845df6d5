"""Re-driving DLQ records to their source topics: the plan, then the produce, acknowledged."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer

from openmonetize.dlq.entries import DlqEntry
from openmonetize.dlq.kafka_access import KAFKA_LOG, log_kafka_error
from openmonetize.dlq.reader import DlqReader
from openmonetize.dlq.retry_rules import (
    REFUSE,
    RETRY,
    RetryDecision,
    decide,
    input_topics,
    retry_count,
    retry_headers,
)
from openmonetize.kafka_clients import KEYED
from openmonetize.settings import Settings


@dataclass
class Planned:
    entry: DlqEntry
    decision: RetryDecision
    source_headers: list[tuple[str, bytes]] | None = None
    acked: bool = False  # for RETRY: Kafka acknowledged the re-produced record
    error: str | None = None  # for RETRY: why it was not re-produced


def plan(reader: DlqReader, entries: list[DlqEntry], max_retries: int,
         on_progress: Callable[[int], None] | None = None) -> list[Planned]:
    """A decision per DLQ record, with the retry count and headers of its source record."""
    inputs = input_topics(reader.topics)
    sources = reader.source_records((e for e in entries if e.get("source_topic") in inputs), on_progress)
    planned = []
    for entry in entries:
        if entry.record is None:
            planned.append(Planned(entry, RetryDecision(REFUSE, entry.error or "undecodable DLQ record")))
            continue
        source = sources.get(entry.id)
        if source is not None and source.same_value:
            previous, headers = retry_count(source.header_map), source.headers
        else:  # gone, or the offset holds other bytes: nothing says it was retried
            previous, headers = 0, None
        # A pipeline that copies the headers into the DLQ record carries the count there too.
        previous = max(previous, retry_count(entry.headers))
        planned.append(Planned(entry, decide(entry, inputs, previous, max_retries), headers))
    return planned


class Redriver:
    """Re-produces original records: acks=all, idempotent, murmur2 on the key like the rest of
    the project (so a key lands on the partition it first did), waiting for every ack."""

    def __init__(self, settings: Settings):
        self.producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": "openmonetize-dlq-retry",
            "acks": "all",
            "enable.idempotence": True,
            **KEYED,
            "linger.ms": 5,
            "message.timeout.ms": settings.kafka_producer_timeout_ms,
            "error_cb": log_kafka_error,
            "logger": KAFKA_LOG,
        })
        self.timeout_s = settings.kafka_producer_timeout_ms / 1000
        self.produced = 0
        self.acknowledged = 0
        self.failed = 0

    def send(self, items: list[Planned], on_progress: Callable[[int, int], None] | None = None) -> None:
        """Produce every RETRY item and wait until each is acknowledged (`acked`) or failed (`error`)."""

        def report(item: Planned):
            def callback(err, _message):
                if err is None:
                    item.acked = True
                    self.acknowledged += 1
                else:
                    item.error = err.str()
                    self.failed += 1

            return callback

        sent: list[Planned] = []
        for item in items:
            if item.decision.action != RETRY:
                continue
            record = item.entry.record
            while True:
                try:
                    self.producer.produce(
                        record["source_topic"], record["value"], record["key"],
                        headers=retry_headers(item.source_headers, item.entry.id, item.decision.count),
                        on_delivery=report(item),
                    )
                    sent.append(item)
                    self.produced += 1
                    break
                except BufferError:  # the local queue is full: serve delivery reports, then again
                    self.producer.poll(0.1)
                except KafkaException as exc:
                    item.error = exc.args[0].str()
                    self.failed += 1
                    break
            self.producer.poll(0)
            if on_progress:
                on_progress(self.produced, self.acknowledged)
        deadline = time.monotonic() + self.timeout_s + 5  # librdkafka fails a record after message.timeout.ms
        while self.producer.flush(0.5) and time.monotonic() < deadline:
            if on_progress:
                on_progress(self.produced, self.acknowledged)
        for item in sent:
            if not item.acked and item.error is None:
                item.error = f"not acknowledged within {self.timeout_s + 5:.0f}s"
                self.failed += 1
        if on_progress:
            on_progress(self.produced, self.acknowledged)

    def close(self) -> None:
        self.producer.flush(1)
