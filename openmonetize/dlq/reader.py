"""Reading the DLQ topic and the source records its entries point at."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from openmonetize.dlq.entries import DlqEntry, Selection
from openmonetize.dlq.ids import DlqId
from openmonetize.dlq.kafka_access import KAFKA_LOG, DlqError, log_kafka_error
from openmonetize.dlq.retry_rules import offset_runs
from openmonetize.settings import Settings
from schemas.codec import AvroCodec, DecodeError
from schemas.topic_codecs import reader_codec
from schemas.topics import Topics, topics

# `--since` seeks with the broker's record timestamps (set when the DLQ record was produced,
# just after its `failed_at`), then filters on `failed_at` exactly; the margin covers the gap.
SINCE_SEEK_MARGIN = timedelta(minutes=5)
STALL_TIMEOUT_S = 30.0
# Source records closer than this many offsets are read in one pass rather than seeked to
# one by one (a seek and its first fetch cost about as much as reading a few hundred records).
MAX_READ_GAP = 500  # no record and no end-of-partition for this long while reading: give up


@dataclass
class SourceRecord:
    """The record a DLQ record's source_offset points at, when it is still on its topic."""

    headers: list[tuple[str, bytes]]
    same_value: bool  # its value is the DLQ record's original value, byte for byte

    @property
    def header_map(self) -> dict[str, bytes]:
        return {k: v for k, v in self.headers}


def _headers(message) -> list[tuple[str, bytes]]:
    return [(k, v or b"") for k, v in (message.headers() or [])]


class DlqReader:
    """Reads the DLQ topic (no consumer group, nothing committed) and decodes its records with
    the schema registry, and reads the source records DLQ records point at."""

    def __init__(self, settings: Settings, resolver, registry_topics: Topics | None = None):
        self.settings = settings
        self.topics = registry_topics or topics(settings)
        self.topic = self.topics.usage_dlq.name
        self.resolver = resolver
        self.codec = reader_codec(resolver, self.topics.usage_dlq)
        self._consumer: Consumer | None = None
        self._source_offsets: dict[tuple[str, int], tuple[int, int] | None] = {}  # per command run

    # Kafka plumbing
    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": "openmonetize-dlq-tool",  # never joined: partitions are assigned, nothing committed
                "client.id": "openmonetize-dlq",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
                "socket.timeout.ms": 10000,
                "error_cb": log_kafka_error,
                "logger": KAFKA_LOG,
            })
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def partitions(self, topic: str | None = None) -> list[int]:
        topic = topic or self.topic
        try:
            metadata = self.consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise DlqError(
                f"cannot reach Kafka at KAFKA_BOOTSTRAP={self.settings.kafka_bootstrap} ({exc.args[0].str()}). "
                "Is the stack up (`make up`)?"
            ) from exc
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise DlqError(
                f"topic {topic!r} does not exist on {self.settings.kafka_bootstrap}"
                + (" (TOPIC_USAGE_DLQ names it; `openmonetize stack up` creates the topics)"
                   if topic == self.topic else "")
            )
        return sorted(described.partitions)

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            return self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            raise DlqError(f"cannot read the offsets of {topic} partition {partition}: {exc.args[0].str()}") from exc

    def decode(self, dlq_id: DlqId, message) -> DlqEntry:
        timestamp_type, timestamp = message.timestamp()
        headers = dict(_headers(message))
        try:
            record = self.codec.decode(message.value() or b"")
        except DecodeError as exc:
            return DlqEntry(dlq_id, None, headers, timestamp, f"the DLQ record does not decode: {exc}")
        return DlqEntry(dlq_id, record, headers, timestamp)

    # The whole topic
    def scan(self, since: datetime | None = None) -> Iterator[DlqEntry]:
        """Every DLQ record from the beginning (or from about `since`) up to the end offsets of
        when the scan began; records that arrive meanwhile are left for the next run."""
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in self.partitions():
            low, high = self._watermarks(self.topic, partition)
            ends[partition] = high
            starts.append(TopicPartition(self.topic, partition, low))
        if since is not None:
            at_ms = int((since - SINCE_SEEK_MARGIN).timestamp() * 1000)
            try:
                found = self.consumer.offsets_for_times(
                    [TopicPartition(self.topic, tp.partition, at_ms) for tp in starts], timeout=10
                )
            except KafkaException as exc:
                raise DlqError(f"cannot look up {self.topic} offsets by time: {exc.args[0].str()}") from exc
            starts = [
                TopicPartition(
                    self.topic, tp.partition, max(tp.offset, low.offset) if tp.offset >= 0 else ends[tp.partition]
                )
                for tp, low in zip(sorted(found, key=lambda t: t.partition), starts)
            ]
        todo = {tp.partition for tp in starts if tp.offset < ends[tp.partition]}
        if not todo:
            return
        consumer = self.consumer
        consumer.assign([tp for tp in starts if tp.partition in todo])
        try:
            stalled_at = time.monotonic() + STALL_TIMEOUT_S
            while todo:
                messages = consumer.consume(500, timeout=0.5)
                if not messages and time.monotonic() > stalled_at:
                    raise DlqError(
                        f"reading {self.topic} stalled for {STALL_TIMEOUT_S:.0f}s with partitions {sorted(todo)} "
                        "not at their end; is the broker healthy?"
                    )
                for message in messages:
                    stalled_at = time.monotonic() + STALL_TIMEOUT_S
                    partition = message.partition()
                    if message.error() is not None:
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            todo.discard(partition)
                            continue
                        raise DlqError(f"reading {self.topic} partition {partition}: {message.error().str()}")
                    if partition not in todo or message.offset() >= ends[partition]:
                        todo.discard(partition)
                        continue
                    yield self.decode(DlqId(partition, message.offset()), message)
                    if message.offset() + 1 >= ends[partition]:
                        todo.discard(partition)
        finally:
            consumer.unassign()

    def select(self, selection: Selection) -> Iterator[DlqEntry]:
        for entry in self.scan(selection.since):
            if selection.matches(entry):
                yield entry

    # Records by id
    def fetch_many(self, ids: Iterable[DlqId]) -> dict[DlqId, DlqEntry | DlqError]:
        """The DLQ record at each id, or a DlqError saying why there is none. Nearby ids are read
        in one pass."""
        ids = list(ids)
        partitions = self.partitions()
        marks = {p: self._watermarks(self.topic, p) for p in {i.partition for i in ids} if p in partitions}
        out: dict[DlqId, DlqEntry | DlqError] = {}
        wanted: dict[int, set[int]] = {}
        for dlq_id in ids:
            problem = _missing(dlq_id, self.topic, partitions, marks.get(dlq_id.partition))
            if problem:
                out[dlq_id] = DlqError(f"no DLQ record {dlq_id}: {problem}")
            else:
                wanted.setdefault(dlq_id.partition, set()).add(dlq_id.offset)
        for partition, offsets in wanted.items():
            for first, last in offset_runs(sorted(offsets), MAX_READ_GAP):
                for message in self._read_range(self.topic, partition, first, last):
                    if message.offset() in offsets:
                        dlq_id = DlqId(partition, message.offset())
                        out[dlq_id] = self.decode(dlq_id, message)
        for dlq_id in ids:
            out.setdefault(dlq_id, DlqError(
                f"no DLQ record {dlq_id}: that offset holds no readable record "
                "(a transaction marker or an aborted write)"
            ))
        return {dlq_id: out[dlq_id] for dlq_id in ids}

    def fetch(self, dlq_id: DlqId) -> DlqEntry:
        """The DLQ record at an id; DlqError saying why there is none."""
        found = self.fetch_many([dlq_id])[dlq_id]
        if isinstance(found, DlqError):
            raise found
        return found

    def source_records(self, entries: Iterable[DlqEntry],
                       on_progress: Callable[[int], None] | None = None) -> dict[DlqId, SourceRecord]:
        """The records the entries point at on their source topics, by DLQ id; an entry whose
        source record is gone (retention, a deleted topic) or unreadable is absent. Nearby offsets
        are read in one pass (`offset_runs`), so checking thousands of records takes seconds."""
        wanted: dict[tuple[str, int], dict[int, list[DlqEntry]]] = {}
        for entry in entries:
            if entry.record is not None:
                topic, partition, offset = entry.source
                wanted.setdefault((topic, partition), {}).setdefault(offset, []).append(entry)
        found: dict[DlqId, SourceRecord] = {}
        for (topic, partition), by_offset in wanted.items():
            bounds = self._source_bounds(topic, partition)
            if bounds is None:
                continue
            offsets = sorted(o for o in by_offset if bounds[0] <= o < bounds[1])
            for first, last in offset_runs(offsets, MAX_READ_GAP):
                for message in self._read_range(topic, partition, first, last):
                    for entry in by_offset.get(message.offset(), ()):
                        found[entry.id] = SourceRecord(_headers(message), message.value() == entry.get("value"))
                if on_progress:
                    on_progress(len(found))
        return found

    def source_record(self, entry: DlqEntry) -> SourceRecord | None:
        return self.source_records([entry]).get(entry.id)

    def _source_bounds(self, topic: str, partition: int) -> tuple[int, int] | None:
        """(low, high) watermarks of a source partition, looked up once per command run; None
        when the topic or partition does not exist."""
        if (topic, partition) not in self._source_offsets:
            try:
                known = partition in self.partitions(topic)
            except DlqError:
                known = False
            self._source_offsets[topic, partition] = self._watermarks(topic, partition) if known else None
        return self._source_offsets[topic, partition]

    def _read_range(self, topic: str, partition: int, first: int, last: int) -> Iterator:
        """The records of offsets first..last (fewer where transaction markers or aborted
        records stand), in one pass."""
        consumer = self.consumer
        consumer.assign([TopicPartition(topic, partition, first)])
        try:
            stalled_at = time.monotonic() + STALL_TIMEOUT_S
            while True:
                messages = consumer.consume(500, timeout=0.5)
                if not messages and time.monotonic() > stalled_at:
                    raise DlqError(f"reading {topic} {partition}:{first}..{last} stalled for {STALL_TIMEOUT_S:.0f}s")
                for message in messages:
                    stalled_at = time.monotonic() + STALL_TIMEOUT_S
                    if message.error() is not None:
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            return
                        raise DlqError(f"reading {topic} partition {partition}: {message.error().str()}")
                    if message.offset() > last:
                        return
                    yield message
                    if message.offset() == last:
                        return
        finally:
            consumer.unassign()


def _missing(dlq_id: DlqId, topic: str, partitions: list[int], marks: tuple[int, int] | None) -> str | None:
    """Why a partition:offset cannot hold a record (None when it may)."""
    if dlq_id.partition not in partitions:
        return f"{topic} has partitions 0..{max(partitions)}"
    low, high = marks
    if high == low:
        removed = f" (offsets up to {high - 1} were removed by retention)" if high else ""
        return f"partition {dlq_id.partition} is empty{removed}"
    if dlq_id.offset >= high:
        return f"partition {dlq_id.partition} ends at offset {high - 1}"
    if dlq_id.offset < low:
        return f"partition {dlq_id.partition} now starts at offset {low} (older records were removed by retention)"
    return None


class OriginalDecoder:
    """Decodes a DLQ record's original value when its source topic is a pipeline input topic."""

    def __init__(self, resolver, registry_topics: Topics):
        self.resolver = resolver
        self.specs = {
            spec.name: spec
            for spec in (registry_topics.usage_events, registry_topics.wallet_commands, registry_topics.wallet_debits)
        }
        self._codecs: dict[str, AvroCodec] = {}

    def decode(self, topic: str, value: bytes) -> tuple[str | None, dict | None, str | None]:
        """(schema name, record, None) or (schema name or None, None, why it does not decode)."""
        spec = self.specs.get(topic)
        if spec is None:
            return None, None, f"{topic!r} is not a pipeline input topic: no schema to decode it with"
        if topic not in self._codecs:
            self._codecs[topic] = reader_codec(self.resolver, spec)
        try:
            return spec.schema_file, self._codecs[topic].decode(value), None
        except DecodeError as exc:
            return spec.schema_file, None, str(exc)
