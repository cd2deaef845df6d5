"""Records a sink's store refuses for what they hold go to usage.dlq, and the sink goes on.

A store refuses a record in two ways. While it is down (a connection error) the batch is
retried until it comes back: nothing is lost and the partitions wait. But a record the store can
never take (a data error: Postgres refuses a NUL in a text column) would be retried for ever,
and with its partitions paused no tenant's ledger would move again. So the batch consumer finds
such records (`isolate`: halves of the batch written until the refused rows are alone), writes
the rest, and sends each refused record here, acknowledged, before the batch's offsets are
committed: a `usage.dlq` record with reason `unstorable`, the sink as its stage, the store's
error as its detail and the original bytes. `openmonetize dlq list --reason unstorable` shows
them; `reconcile` reports the ledger entries missing from Postgres.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from confluent_kafka import Producer

from openmonetize.logs import get_logger
from schemas.codec import AvroCodec
from schemas.dlq_reasons import Reason
from schemas.topic_codecs import writer_codec
from schemas.topics import topics

log = get_logger(__name__)



class Source(NamedTuple):
    """Where a row came from: for its dead letter."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_id: str | None
    customer_id: str | None


def isolate(write: Callable[[list], int], rows: list, refused: tuple[type[BaseException], ...]
            ) -> tuple[int, list[tuple[int, BaseException]]]:
    """Write `rows`; when the store refuses them for their content, write halves until each
    refused row is alone. (rows written, [(index of a refused row, the store's error)]). Any
    other error (the store went down meanwhile) propagates: the batch is retried whole."""
    try:
        return write(rows), []
    except refused as exc:
        if len(rows) == 1:
            return 0, [(0, exc)]
    middle = len(rows) // 2
    inserted, bad = isolate(write, rows[:middle], refused)
    more, bad_after = isolate(write, rows[middle:], refused)
    return inserted + more, bad + [(middle + i, exc) for i, exc in bad_after]


class DeadLetters:
    """The sink's dead letters: encoded for usage.dlq, produced and acknowledged."""

    def __init__(self, settings, stage: str, source_topic: str, registry):
        """`registry`: the schema registry the sink already reads its records' schemas from."""
        self.settings, self.stage, self.source_topic, self.registry = settings, stage, source_topic, registry
        self._producer: Producer | None = None  # made at the first dead letter: most sinks never send one
        self._codec: AvroCodec | None = None

    def send(self, refused: Sequence[tuple[Source, BaseException]]) -> None:
        """Produce one dead letter per refused record; raise unless Kafka acknowledged all."""
        if not refused:
            return
        spec = topics(self.settings).usage_dlq
        if self._producer is None:
            self._codec = writer_codec(self.registry, spec)
            self._producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "enable.idempotence": True})
        failures: list[str] = []

        def delivered(err, _msg) -> None:
            if err is not None:
                failures.append(str(err))

        now = datetime.now(timezone.utc)
        for source, exc in refused:
            detail = f"{type(exc).__name__}: {str(exc).strip()}"[:2000]
            log.error(f"{self.stage}_unstorable", partition=source.partition, offset=source.offset,
                      event_id=source.event_id, customer_id=source.customer_id, error=detail)
            value = self._codec.encode({
                "reason": Reason.UNSTORABLE, "detail": detail, "stage": self.stage, "source_topic": self.source_topic,
                "source_partition": source.partition, "source_offset": source.offset, "key": source.key,
                "value": source.value, "event_id": source.event_id, "customer_id": source.customer_id,
                "failed_at": now,
            })
            self._producer.produce(spec.name, key=source.key or b"", value=value, on_delivery=delivered)
        left = self._producer.flush(30)
        if left or failures:
            raise DeadLetterError(f"{left} dead letters unsent, {len(failures)} failed: {failures[:1]}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)


class DeadLetterError(Exception):
    """The dead letters were not acknowledged: the batch is retried, as if the store were down."""
