"""What both agents do with their outputs: DLQ records, and sending a batch's outputs acknowledged."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

from prometheus_client import Counter

from openmonetize.kafka_producer import AckedProducer
from openmonetize.logs import get_logger
from stream_processors.batch_source import BatchSource, PartitionsRevoked
from stream_processors.codecs import Codecs

log = get_logger(__name__)
DLQ_RECORDS = Counter("openmonetize_dlq_records_total", "Records the worker sent to usage.dlq, by stage and reason",
                      ["stage", "reason"])

OUTPUT_FAILURE_EXIT = 70  # the worker exits and its supervisor restarts it: the batch is re-delivered


async def send_all(producer: AckedProducer, outputs: list[tuple[str, list[tuple[bytes, bytes]]]]) -> None:
    """Send every (topic, records) and return once Kafka acknowledged all of them.

    A batch whose outputs may be lost must never be recorded as applied: on any failure the
    process exits, and the batch is read again from the last applied offsets.
    """
    await _acknowledged(producer, [(topic, records, None) for topic, records in outputs])


async def send_all_as_owner(producer: AckedProducer, outputs: list[tuple[str, list[tuple[bytes, bytes]]]],
                            source: BatchSource, offsets: dict[tuple[str, int], int]) -> None:
    """`send_all`, and meanwhile the group coordinator's word that this worker still owns the
    batch's partitions (`source.confirm_owner`), then the source's own check: what the agent
    writes next (states, markers) is what the partitions' next owner reads."""
    await asyncio.gather(send_all(producer, outputs), source.confirm_owner(offsets))
    source.check_owner()


async def send_to_partitions(
    producer: AckedProducer, topic: str, per_partition: dict[int, list[tuple[bytes, bytes]]]
) -> dict[int, int]:
    """Like `send_all`, each partition's records to that partition (a table's changelog); the
    offset of the last record written in each partition."""
    deliveries = await _acknowledged(producer, [(topic, records, partition) for partition, records in per_partition.items()])
    return {partition: offset for delivery in deliveries for partition, offset in delivery.last_offsets.items()}


async def _acknowledged(producer: AckedProducer, sends: list[tuple[str, list[tuple[bytes, bytes]], int | None]]) -> list:
    pending = [(topic, records, partition) for topic, records, partition in sends if records]
    deliveries = await asyncio.gather(*(producer.produce(t, r, len(r), partition=p) for t, r, p in pending))
    for (topic, _, _), delivery in zip(pending, deliveries):
        if delivery.error is not None:
            log.error("outputs not acknowledged; exiting", topic=topic, error=delivery.error)
            os._exit(OUTPUT_FAILURE_EXIT)
    return deliveries


async def handle_or_exit(handle, batch, agent: str) -> None:
    """Apply one batch; on any error, exit the process so that its supervisor restarts it and the
    batch is read again from the applied offsets. Left to Faust, the crash is logged, the agent
    restarted in place, and its in-memory position is already past the batch: the chaos
    broker_restart scenario lost 74 events that way (a view's watermark query failed mid-batch)."""
    try:
        await handle(batch)
    except PartitionsRevoked:
        raise  # not a failure: the batch source abandons the batch
    except Exception:  # noqa: BLE001 - whatever it was, the batch must be read again
        log.exception("batch not applied; exiting to read it again", agent=agent)
        os._exit(OUTPUT_FAILURE_EXIT)


def oldest_timestamp_s(messages) -> float | None:
    """The earliest Kafka timestamp (seconds) of a batch's records, for the stage latency."""
    return min((t for m in messages if (t := getattr(m, "timestamp", None))), default=None)


def dlq_record(
    codecs: Codecs, message, reason: str, stage: str, detail: str, record: dict | None, now: datetime
) -> tuple[bytes, bytes]:
    """(key, value) for usage.dlq: the reason, the stage and the ORIGINAL bytes, for `openmonetize dlq retry`."""
    DLQ_RECORDS.labels(stage, reason).inc()
    value = {
        "reason": reason,
        "detail": detail,
        "stage": stage,
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "key": message.key,
        "value": message.value,
        "event_id": (record or {}).get("event_id"),
        "customer_id": (record or {}).get("customer_id"),
        "failed_at": now,
    }
    return message.key or b"", codecs.dlq.encode(value)
