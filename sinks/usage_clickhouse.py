"""The ClickHouse sink: `usage.rated` → `usage_events` (and, through its materialized views, the
hourly and daily rollups).

One consumer group (CLICKHOUSE_SINK_GROUP), batches of CLICKHOUSE_SINK_BATCH_ROWS rows or
CLICKHOUSE_SINK_BATCH_MS, one INSERT per batch, offsets committed after it (sinks/batch_consumer.py:
retries while ClickHouse is down).

The INSERT is in ClickHouse's `Avro` format: the records' own Avro bodies, each followed by its
Kafka topic, partition and offset, in one container (schemas/avro_container.py); ClickHouse maps
the fields to the columns by name. The sink reads only the three fields its copy memory needs
(customer, event id, revision) instead of decoding 33 fields into Python values that
clickhouse-connect then serialised again. A record written with another schema than ours is
decoded into ours and encoded again first.

Why the sink drops copies itself: `usage_events` is a ReplacingMergeTree, so a copy of an event
collapses into one row under FINAL; but the rollups are fed by materialized views, which see
every INSERT and would count a copy twice. Copies come from two places, and each partition of
usage.rated has a memory (`PartitionMemory`) for both:

- this sink reading again records it stored but had not committed (a crash, an outage, a lost
  group session): the same offsets. When it is given a partition, and after any failed INSERT
  (which may have been stored although the answer was lost), the sink asks ClickHouse which
  offsets of the partition it already holds from where reading resumes, and skips exactly those,
  however many they are;
- the wallet agent emitting a rated event again after a worker crash: a new offset, a few
  seconds later, on the same partition (the topic is keyed by customer and user). The sink keeps
  the (customer, event id, revision) of the last CLICKHOUSE_SINK_RECENT_IDS rows of each
  partition (loaded from ClickHouse with the offsets) and drops a row it has seen at the same or
  a higher revision. A replay that re-rates events writes them with a higher revision: those pass.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping

from clickhouse_connect.driver.exceptions import DatabaseError

from openmonetize import clickhouse_client
from openmonetize.analytics.usage_events import COLUMNS, TABLE
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from schemas.avro_container import ContainerWriter
from schemas.avro_encoder import zigzag_long
from sinks.batch_consumer import BatchConsumer, SinkConfig, reader_codec_with_retry

log = get_logger(__name__)

# The Kafka position appended to each body (ContainerWriter's extra fields).
POSITION_FIELDS = [{"name": "kafka_topic", "type": "string"}, {"name": "kafka_partition", "type": "int"},
                   {"name": "kafka_offset", "type": "long"}]
MEMORY_FIELDS = ("customer_id", "event_id", "revision")
# A row: what the copy memory reads, where it was read, and the record's Avro body in our schema.
_CUSTOMER, _EVENT, _REVISION, _PARTITION, _OFFSET, _BODY = range(6)
# Server errors about a row's data, not about the server: that row goes to the dead letters
# (CANNOT_PARSE_TEXT, CANNOT_PARSE_INPUT_ASSERTION_FAILED, CANNOT_PARSE_DATETIME,
# ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER, INCORRECT_DATA,
# VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, DECIMAL_OVERFLOW, TOO_LARGE_STRING_SIZE).
DATA_ERROR_CODES = frozenset({6, 27, 41, 69, 70, 72, 117, 321, 407, 131})


class RowsRefused(DatabaseError):
    """ClickHouse refused the INSERT for a row's content (one of DATA_ERROR_CODES)."""


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in an exception's message ("Code: 117. DB::Exception: ..."), or None."""
    match = re.search(r"\bCode: (\d+)", str(exc))
    return int(match.group(1)) if match else None


class RowReader:
    """Rows from usage.rated record values: the memory's three fields (a projection that steps
    over the others) and the body as it came, when written with our schema (the usual case);
    else the record decoded whole and encoded again in ours."""

    def __init__(self, codec):
        self.codec = codec  # decodes any registered writer schema into ours, and encodes ours
        self._memory_fields = codec.projection(MEMORY_FIELDS)

    def row(self, value: bytes, partition: int, offset: int) -> tuple[tuple, Mapping]:
        """(row, the fields read) of one record value. Raises for a record that does not decode."""
        if value[:5] in self.codec.own_headers:
            fields = self._memory_fields.decode(value)
            body = value[5:]
        else:
            fields = self.codec.decode(value)
            body = self.codec.encode(fields)[5:]
        return (fields["customer_id"], fields["event_id"], fields["revision"], partition, offset, body), fields


class RecentEvents:
    """The revision of the last `capacity` (customer, event id) pairs stored; the oldest go first.

    Keyed by Python's 64-bit hash of the pair: the memory lives and dies with the process (it is
    reloaded from ClickHouse at start), so the per-process hash seed does not matter, and a
    collision among a few hundred thousand keys (about 1 in 10^8) would only re-insert a row."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        # An OrderedDict, not a dict: evicting a plain dict's first key again and again walks the
        # deleted slots left at its front, and the sink fell to a third of its rate once full.
        self._revisions: OrderedDict[int, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._revisions)

    def seen(self, key: int, revision: int) -> bool:
        return self._revisions.get(key, -1) >= revision

    def remember(self, pairs: Iterable[tuple[str, str, int]]) -> None:
        revisions = self._revisions
        for customer_id, event_id, revision in pairs:
            key = hash((customer_id, event_id))
            if revisions.get(key, -1) >= revision:
                continue
            revisions[key] = revision
            revisions.move_to_end(key)  # now the newest
        while len(revisions) > self.capacity:
            revisions.popitem(last=False)


class PartitionMemory:
    """What the sink knows ClickHouse holds of one partition of usage.rated: the offsets stored at
    or after the point where reading resumed (exact: a re-read record is skipped by its offset),
    and the recent events (a copy at a new offset is skipped by its id and revision)."""

    def __init__(self, capacity: int, stored_offsets: Iterable[int] = ()):
        self.recent = RecentEvents(capacity)
        self.stored_offsets = set(stored_offsets)


def fresh_rows(memories: Mapping[int, PartitionMemory], rows: Iterable[tuple]) -> list[tuple]:
    """The rows ClickHouse does not hold yet at their revision (a copy within `rows` counts once).
    Every row's partition must have a memory."""
    out, batch = [], {}
    for row in rows:
        memory = memories[row[_PARTITION]]
        if row[_OFFSET] in memory.stored_offsets:
            memory.stored_offsets.discard(row[_OFFSET])  # each offset is read again once
            continue
        key, revision = hash((row[_CUSTOMER], row[_EVENT])), row[_REVISION]
        if memory.recent.seen(key, revision) or batch.get(key, -1) >= revision:
            continue
        batch[key] = revision
        out.append(row)
    return out


class ClickHouseStore:
    """`usage_events` over clickhouse-connect; drops copies of rows already stored (see above)."""

    name = "clickhouse"
    refused = (RowsRefused,)  # ClickHouse refused a row's content: that row only
    unavailable = (DatabaseError,)

    def __init__(self, settings: Settings, topic: str):
        self.settings, self.topic = settings, topic
        self.memories: dict[int, PartitionMemory] = {}  # per partition; (re)loaded while cold
        self._client = None
        self._reader: RowReader | None = None
        self._container: ContainerWriter | None = None
        self._topic_field = zigzag_long(len(topic.encode())) + topic.encode()
        self._cold: set[int] = set()  # partitions whose memory must be (re)loaded from ClickHouse
        self._assigned: list[int] = []  # from the consumer's thread, taken into _cold by write()
        self._lock = threading.Lock()

    def read(self, codec, value: bytes, partition: int, offset: int) -> tuple[tuple, Mapping]:
        if self._reader is None or self._reader.codec is not codec:
            self._reader = RowReader(codec)
            self._container = ContainerWriter(codec.raw_schema, POSITION_FIELDS)
        return self._reader.row(value, partition, offset)

    def assigned(self, partitions: list[int]) -> None:
        with self._lock:
            self._assigned.extend(partitions)

    def write(self, rows: list[tuple]) -> int:
        with self._lock:
            self._cold.update(self._assigned)
            self._assigned.clear()
        partitions = {row[_PARTITION] for row in rows}
        try:
            client = self._connect()
            self._cold.update(partitions - self.memories.keys())
            if self._cold:
                self._load(client, rows)
            fresh = fresh_rows(self.memories, rows)
            if fresh:
                self._insert_rows(client, fresh)
            stored: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
            for row in fresh:
                stored[row[_PARTITION]].append((row[_CUSTOMER], row[_EVENT], row[_REVISION]))
            for partition, events in stored.items():
                self.memories[partition].recent.remember(events)
            return len(fresh)
        except DatabaseError:
            self._cold.update(partitions)  # the INSERT may be stored after all
            raise

    def _insert_rows(self, client, rows: list[tuple]) -> None:
        """One INSERT in the Avro format: each body followed by its Kafka position."""
        topic = self._topic_field
        container = self._container.container(
            (row[_BODY] + topic + zigzag_long(row[_PARTITION]) + zigzag_long(row[_OFFSET]) for row in rows), len(rows))
        try:
            client.raw_insert(TABLE, list(COLUMNS), insert_block=container, fmt="Avro")
        except DatabaseError as exc:
            if error_code(exc) in DATA_ERROR_CODES:
                raise RowsRefused(str(exc)) from exc
            raise

    def _connect(self):
        if self._client is None:
            s = self.settings
            self._client = clickhouse_client.get_client(
                s, "writer", database=s.clickhouse_database, connect_timeout=5,
                send_receive_timeout=s.clickhouse_sink_timeout_s, compress="lz4", autogenerate_session_id=False)
        return self._client

    def _load(self, client, rows: list[tuple]) -> None:
        """Load the memory of the cold partitions among `rows` from ClickHouse: the offsets it
        holds from the lowest offset of `rows` (where reading resumed) on, and the events of the
        last CLICKHOUSE_SINK_RECENT_IDS offsets before it and after."""
        lowest: dict[int, int] = {}
        for row in rows:
            lowest[row[_PARTITION]] = min(lowest.get(row[_PARTITION], row[_OFFSET]), row[_OFFSET])
        partitions = sorted(p for p in self._cold if p in lowest)
        if not partitions:
            return
        window = self.settings.clickhouse_sink_recent_ids
        conditions, params = [], {"topic": self.topic}
        for i, partition in enumerate(partitions):
            conditions.append(f"(kafka_partition = {{p{i}:UInt32}} AND kafka_offset >= {{o{i}:UInt64}})")
            params[f"p{i}"], params[f"o{i}"] = partition, max(lowest[partition] - window, 0)
        found = client.query(
            f"SELECT kafka_partition, kafka_offset, customer_id, event_id, revision FROM {TABLE} "
            f"WHERE kafka_topic = {{topic:String}} AND ({' OR '.join(conditions)}) ORDER BY kafka_offset",
            parameters=params).result_rows
        held: dict[int, list[tuple]] = defaultdict(list)
        for r in found:
            held[r[0]].append(r)
        for partition in partitions:
            memory = PartitionMemory(window, (r[1] for r in held[partition] if r[1] >= lowest[partition]))
            memory.recent.remember(r[2:] for r in held[partition])
            self.memories[partition] = memory
            log.info("clickhouse_sink_memory_loaded", partition=partition, resume_offset=lowest[partition],
                     stored_after=len(memory.stored_offsets), remembered=len(memory.recent))
        self._cold.difference_update(partitions)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def run(settings: Settings) -> None:
    from schemas.topics import topics

    s = settings
    spec = topics(s).usage_rated
    config = SinkConfig(spec.name, s.clickhouse_sink_group, s.clickhouse_sink_batch_rows, s.clickhouse_sink_batch_ms,
                        s.clickhouse_sink_max_backoff_s, s.clickhouse_sink_metrics_port)
    codec = reader_codec_with_retry(s, spec, ClickHouseStore.name, s.clickhouse_sink_max_backoff_s)
    BatchConsumer(s, config, codec, ClickHouseStore(s, spec.name)).run()
