"""How far an agent's STATE has applied each source partition, kept in the state itself.

Faust commits the consumer group's offsets on its own schedule, and under kill -9 the group's
offset was seen AHEAD of what the wallet states had applied: debits were skipped, never
charged (docs/development/stream-processing.md). So the group's offset is not trusted. After writing a
batch's states, the agent writes one marker per source partition into the same table: the
next offset to apply. Every time Faust seeks to the committed offsets (after recovery, on
every rebalance), the agent's batch source (batch_source.py) starts reading at the markers
instead, and records below a marker are skipped as already applied.

A marker lives in its own source partition's changelog partition, so that recovering a
partition recovers its state and its marker together; the agent writes it there through its
acknowledged producer after the states it covers (`entries`, then `save_local`). Its key:
- in a table placed by the producer's partitioner (`use_partitioner`, the wallets), one chosen
  to hash (murmur2, like the wallet ids) into that partition (`marker_key`);
- in a table placed by the source partition (the dedupe table), any fixed key per partition
  (`plain_marker_key`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from typing import NamedTuple

from aiokafka.partitioner import murmur2
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from faust.types import TP

from openmonetize.logs import get_logger
from stream_processors.stores import PartitionStores

log = get_logger(__name__)

PREFIX = b"\x00applied\x1f"  # wallet ids start with "w:", so no wallet key can collide


@lru_cache(maxsize=None)
def marker_key(topic: str, partition: int, partitions: int) -> bytes:
    """The first key for (topic, partition) that the murmur2 partitioner puts in `partition`."""
    for salt in range(1_000_000):
        key = PREFIX + f"{topic}\x1f{partition}\x1f{salt}".encode()
        if (murmur2(key) & 0x7FFFFFFF) % partitions == partition:
            return key
    raise AssertionError("no marker key found")  # pragma: no cover: 1/partitions of keys qualify


def plain_marker_key(topic: str, partition: int, partitions: int) -> bytes:
    return PREFIX + f"{topic}\x1f{partition}".encode()


def encode(next_offset: int) -> bytes:
    return next_offset.to_bytes(8, "big")


def decode(raw: bytes | None) -> int | None:
    return int.from_bytes(raw, "big") if raw else None


class SourceRecord(NamedTuple):
    """A source record as the agents use it, read straight from Kafka (batch_source.py, GapReader)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # seconds: when it was produced (None: unknown)


class GapReader:
    """Reads [first, end) of one partition straight from the broker (its own consumer, no group)."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.consumer: Consumer | None = None  # made at the first gap: most workers never see one

    def read(self, topic: str, partition: int, first: int, end: int, timeout_s: float = 30.0) -> list[SourceRecord]:
        if self.consumer is None:
            self.consumer = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": "openmonetize-gap-reader",
                "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": "read_committed",
            })
        self.consumer.assign([TopicPartition(topic, partition, first)])
        records: list[SourceRecord] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                message = self.consumer.poll(0.5)
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        return records
                    raise KafkaException(message.error())
                if message.offset() >= end:
                    return records
                records.append(SourceRecord(topic, partition, message.offset(), message.key(), message.value()))
            raise TimeoutError(f"reading {topic}[{partition}] {first}..{end} took over {timeout_s}s")
        finally:
            self.consumer.unassign()


class AppliedOffsets:
    """The markers of one table, the consumer moved to them, and every batch put in order by them.

    Faust does not deliver a partition's records contiguously: records fetched while a
    rebalance or recovery is under way arrive (or are dropped) around the seek that ends it,
    and some records of a partition never reach the stream at all. So each batch is checked
    against the next offset of each partition: a record below it is a duplicate, and a record
    above it means a gap, which is read straight from the broker (`GapReader`) and applied first.
    A gap with no records in it (retention deleted them, or transaction markers) is skipped.
    """

    def __init__(
        self, app, table, topics: set[str], partitions: int, bootstrap: str,
        key_for: Callable[[str, int, int], bytes] = marker_key,
    ):
        self.app = app
        self.table = table
        self.stores = PartitionStores(table)
        self.topics = topics
        self.partitions = partitions
        self.key_for = key_for
        self.gaps = GapReader(bootstrap)
        self.next: dict[tuple[str, int], int] = {}  # in memory; forgotten on every seek

    def stored(self, topic: str, partition: int) -> int | None:
        return decode(self.table.get(self.key_for(topic, partition, self.partitions)))

    async def in_order(self, messages) -> tuple[list, int, int]:
        """(records to apply, contiguous per partition; duplicates dropped; gap records read)."""
        admitted, duplicates, filled = [], 0, 0
        for message in messages:
            source = (message.topic, message.partition)
            expected = self.next.get(source)
            if expected is None:
                expected = self.stored(*source) or 0
            if message.offset < expected:
                duplicates += 1
                continue
            if message.offset > expected:
                missing = await asyncio.to_thread(self.gaps.read, *source, expected, message.offset)
                log.warning("records missing from the stream; read from the broker", topic=message.topic,
                            partition=message.partition, first=expected, end=message.offset, read=len(missing))
                admitted += missing
                filled += len(missing)
            admitted.append(message)
            self.next[source] = message.offset + 1
        return admitted, duplicates, filled

    def entries(self, advanced: Mapping[tuple[str, int], int]) -> dict[int, list[tuple[bytes, bytes]]]:
        """A batch's markers, per changelog partition (= source partition): for the agent to
        send, acknowledged, after the states they cover."""
        out: dict[int, list[tuple[bytes, bytes]]] = {}
        for (topic, partition), offset in advanced.items():  # co-partitioned topics share a partition
            out.setdefault(partition, []).append((self.key_for(topic, partition, self.partitions), encode(offset)))
        return out

    def save_local(self, advanced: Mapping[tuple[str, int], int], changelog_offsets: Mapping[int, int]) -> None:
        """The markers into the table's local store, once their changelog records are acknowledged;
        then, per changelog partition, the offset of the last record the store now holds.

        The agents write the changelog themselves (not through Faust's producer, which would
        record that offset on each send), so they record it: a RocksDB store then recovers from
        there after a restart instead of reading the whole changelog again (a memory store
        ignores it). Recorded last, so the store never claims a record it does not hold."""
        for partition, markers in self.entries(advanced).items():
            self.stores.write(partition, markers)
        changelog = self.table.changelog_topic.get_topic_name()
        for partition, offset in changelog_offsets.items():
            self.table.data.set_persisted_offset(TP(changelog, partition), offset)

    def install(self, consumer, start_reading: Callable[[dict[tuple[str, int], int]], Awaitable[None]]) -> None:
        """Wrap `consumer.seek_to_committed`, which Faust's `perform_seek` calls after every
        recovery: the agent's source partitions are then read from their markers (`start_reading`,
        the agent's BatchSource), not from the group's offsets."""
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_applied():
            offsets = dict(await seek_to_committed())
            self.next.clear()
            positions: dict[tuple[str, int], int] = {}
            for tp, committed in offsets.items():
                if tp.topic not in self.topics:
                    continue
                applied = self.stored(tp.topic, tp.partition)
                if applied is None:
                    # No marker: nothing of this partition was ever applied, whatever the group's
                    # offset says. Faust commits the records it fetched before the batch source
                    # paused it (the agents' empty streams ack them): trusting that offset lost
                    # every debit of a fresh worker's unread partitions when it was killed before
                    # its first batch of them (tests/integration/test_wallet_agent.py, kill -9).
                    positions[tp.topic, tp.partition] = OFFSET_BEGINNING
                    continue
                if committed is not None and applied < committed:
                    # Expected after a crash: a batch commits its offsets before it writes (the
                    # owner check, batch_source.py), and that batch was not applied.
                    log.info("group offset ahead of the applied state; reading from the applied state",
                             topic=tp.topic, partition=tp.partition, committed=committed, applied=applied)
                positions[tp.topic, tp.partition] = applied
            for source, position in positions.items():
                if position >= 0:
                    self.next[source] = position
            await start_reading(positions)
            return offsets

        consumer.seek_to_committed = seek_to_applied
