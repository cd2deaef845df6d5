"""The dead-letter queue, read and re-driven: the core of `openmonetize dlq list|show|retry`
(the command bodies and their output are in openmonetize/dlq_cli.py).

Every record the pipeline cannot process goes to the DLQ topic (`usage.dlq`) as a `DlqRecord`
(schemas/avro/dlq_record.avsc): the reason, the stage, where it came from (source topic,
partition, offset) and the ORIGINAL key and value bytes. A DLQ record is named by its place in
the DLQ topic, `partition:offset` (`DlqId`).

Retrying re-produces the original key and value bytes to the source topic, with two headers:
`openmonetize-dlq-retry-of` (the DLQ id it came from) and `openmonetize-dlq-retry-count` (how
many times this record has been re-driven). The pipeline does not copy headers into the DLQ
record, so the count of a DLQ record is read from the record its `source_offset` points at:
when a retried record fails again, that is the retried copy, which carries the count. A record
whose count reached `--max-retries` is skipped, so a record that keeps failing cannot loop.
Re-driving is safe because the pipeline dedupes by event id (usage events) and command id
(wallet commands and debits): a record that was in fact applied is not applied twice.
"""

from __future__ import annotations

import heapq
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from schemas.codec import AvroCodec, DecodeError
from schemas.topic_codecs import reader_codec
from schemas.topics import Topics, topics

log = get_logger(__name__)

RETRY_OF_HEADER = "openmonetize-dlq-retry-of"
RETRY_COUNT_HEADER = "openmonetize-dlq-retry-count"
OUR_HEADERS = (RETRY_OF_HEADER, RETRY_COUNT_HEADER)

# `--since` seeks with the broker's record timestamps (set when the DLQ record was produced,
# just after its `failed_at`), then filters on `failed_at` exactly; the margin covers the gap.
SINCE_SEEK_MARGIN = timedelta(minutes=5)
STALL_TIMEOUT_S = 30.0
# Source records closer than this many offsets are read in one pass rather than seeked to
# one by one (a seek and its first fetch cost about as much as reading a few hundred records).
MAX_READ_GAP = 500  # no record and no end-of-partition for this long while reading: give up


class DlqError(Exception):
    """A problem the operator can fix or should know about (Kafka unreachable, missing topic);
    the message says which."""


# --- ids and times (pure) -----------------------------------------------------------------
@dataclass(frozen=True, order=True)
class DlqId:
    """A DLQ record's place in the DLQ topic: `partition:offset`."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


_ID = re.compile(r"(\d{1,9}):(\d{1,19})")


def parse_id(text: str) -> DlqId:
    """`"3:1042"` → DlqId(3, 1042); ValueError naming the expected form otherwise."""
    match = _ID.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a DLQ record id: expected PARTITION:OFFSET, e.g. 0:42 (see `dlq list`)")
    return DlqId(int(match[1]), int(match[2]))


def parse_ids(texts: Iterable[str]) -> list[DlqId]:
    """Every id, in the order given, each once."""
    return list(dict.fromkeys(parse_id(text) for text in texts))


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from RFC 3339 / ISO 8601 (`2026-11-26T12:00:00Z`, a date alone is
    its midnight, no timezone means UTC) or a duration before now (`90s`, `15m`, `2h`, `7d`, `1w`)."""
    raw = text.strip()
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        now = now or datetime.now(timezone.utc)
        return now - timedelta(**{_UNITS[relative[2]]: float(relative[1])})
    try:
        parsed = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "zZ" and raw else raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give RFC 3339 (2026-11-26T12:00:00Z, 2026-11-26) or an age (30m, 2h, 7d)"
        ) from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


# --- records and selection ----------------------------------------------------------------
@dataclass
class DlqEntry:
    """One DLQ record as read: its id, its Kafka headers and timestamp, and the decoded
    DlqRecord (`record`), or `error` when the DLQ record itself does not decode."""

    id: DlqId
    record: dict | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int | None = None
    error: str | None = None

    def get(self, name: str):
        return (self.record or {}).get(name)

    @property
    def sort_key(self) -> tuple:
        failed_at = self.get("failed_at")
        return (failed_at.timestamp() if failed_at else float("-inf"), self.id.partition, self.id.offset)

    @property
    def source(self) -> tuple[str, int, int] | None:
        if self.record is None:
            return None
        return self.record["source_topic"], self.record["source_partition"], self.record["source_offset"]


@dataclass(frozen=True)
class Selection:
    """Which DLQ records a command works on; an empty field does not filter."""

    reasons: frozenset[str] = frozenset()
    customer: str | None = None
    stage: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: DlqEntry) -> bool:
        if entry.record is None:  # an undecodable DLQ record: only an unfiltered listing shows it
            return not self.filtered
        if self.reasons and entry.get("reason") not in self.reasons:
            return False
        if self.customer is not None and entry.get("customer_id") != self.customer:
            return False
        if self.stage is not None and entry.get("stage") != self.stage:
            return False
        failed_at = entry.get("failed_at")
        if self.since is not None and failed_at < self.since:
            return False
        if self.until is not None and failed_at >= self.until:
            return False
        return True

    @property
    def filtered(self) -> bool:
        return bool(self.reasons or self.customer is not None or self.stage is not None or self.since or self.until)


class Earliest:
    """The `limit` earliest (by failed_at, then id) of the entries offered; all when limit is 0."""

    def __init__(self, limit: int):
        self.limit = limit
        self._heap: list[tuple] = []  # (negated sort key, counter, entry): a max-heap of the kept ones
        self._count = 0

    def offer(self, entry: DlqEntry) -> None:
        self._count += 1
        key = entry.sort_key
        item = (tuple(-k for k in key), self._count, entry)
        if not self.limit or len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif key < tuple(-k for k in self._heap[0][0]):
            heapq.heapreplace(self._heap, item)

    def entries(self) -> list[DlqEntry]:
        return sorted((item[2] for item in self._heap), key=lambda e: e.sort_key)


# --- retry decisions (pure) ---------------------------------------------------------------
RETRY, SKIP_LIMIT, REFUSE = "retry", "skip_limit", "refuse"


@dataclass(frozen=True)
class RetryDecision:
    action: str  # RETRY, SKIP_LIMIT or REFUSE
    why: str = ""
    count: int = 0  # for RETRY: the retry count the re-produced record carries


def input_topics(registry_topics: Topics) -> tuple[str, ...]:
    """The pipeline's input topics: the only ones a DLQ record may be re-driven to."""
    return (registry_topics.usage_events.name, registry_topics.wallet_commands.name, registry_topics.wallet_debits.name)


def decide(entry: DlqEntry, inputs: Iterable[str], previous_count: int, max_retries: int) -> RetryDecision:
    """What to do with one DLQ record whose source record has been re-driven `previous_count` times."""
    inputs = tuple(inputs)
    topic = entry.get("source_topic")
    if topic not in inputs:
        return RetryDecision(
            REFUSE,
            f"source topic {topic!r} is not a pipeline input topic ({', '.join(inputs)}); "
            "re-producing there would not re-run the pipeline",
        )
    if previous_count >= max_retries:
        return RetryDecision(
            SKIP_LIMIT, f"already retried {previous_count} time(s), the limit is {max_retries} (--max-retries)"
        )
    return RetryDecision(RETRY, count=previous_count + 1)


def offset_runs(offsets: list[int], max_gap: int) -> list[tuple[int, int]]:
    """Sorted offsets as (first, last) runs in which neighbours are at most `max_gap` apart."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][1] <= max_gap:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs


def retry_count(headers: dict[str, bytes] | None) -> int:
    """The retry count a record's headers carry (0 when none or unreadable)."""
    raw = (headers or {}).get(RETRY_COUNT_HEADER)
    try:
        return max(int(raw.decode()), 0) if raw else 0
    except ValueError:
        return 0


def retry_headers(source_headers: list[tuple[str, bytes]] | None, dlq_id: DlqId, count: int) -> list[tuple[str, bytes]]:
    """The original record's headers (when it could be read), ours replaced."""
    kept = [(k, v) for k, v in (source_headers or []) if k not in OUR_HEADERS]
    return [*kept, (RETRY_OF_HEADER, str(dlq_id).encode()), (RETRY_COUNT_HEADER, str(count).encode())]


# --- reading ------------------------------------------------------------------------------
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
                "error_cb": _log_kafka_error,
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


# --- retrying -----------------------------------------------------------------------------
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
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "message.timeout.ms": settings.kafka_producer_timeout_ms,
            "error_cb": _log_kafka_error,
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


def _log_kafka_error(err: KafkaError) -> None:
    log.debug("kafka_client_error", error=err.str(), fatal=err.fatal())


class _LibrdkafkaLog(logging.LoggerAdapter):
    """librdkafka's own lines (a refused connection is logged every 50 ms) at DEBUG: a command
    reports what went wrong in its one error line; `openmonetize -v` shows them."""

    def log(self, level, msg, *args, **kwargs):
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)


KAFKA_LOG = _LibrdkafkaLog(logging.getLogger("openmonetize.dlq.librdkafka"), {})
