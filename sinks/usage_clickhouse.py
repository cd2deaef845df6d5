"""The ClickHouse sink: `usage.rated` → `usage_events` (and, through its materialized views, the
hourly and daily rollups).

One consumer group (CLICKHOUSE_SINK_GROUP), batches of CLICKHOUSE_SINK_BATCH_ROWS rows or
CLICKHOUSE_SINK_BATCH_MS, one INSERT per batch, offsets committed after it (sinks/batch_consumer.py:
retries while ClickHouse is down).

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

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal

from clickhouse_connect.driver.exceptions import DatabaseError, DataError

from openmonetize import clickhouse_client
from openmonetize.analytics import usage_events
from openmonetize.analytics.usage_events import COLUMNS, TABLE
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from sinks.batch_consumer import BatchConsumer, SinkConfig, reader_codec_with_retry

log = get_logger(__name__)

_CUSTOMER, _EVENT, _REVISION = COLUMNS.index("customer_id"), COLUMNS.index("event_id"), COLUMNS.index("revision")
_PARTITION, _OFFSET = COLUMNS.index("kafka_partition"), COLUMNS.index("kafka_offset")
ZERO = Decimal(0)


def to_row(record: Mapping, topic: str, partition: int, offset: int) -> tuple:
    """A decoded usage.rated record as a `usage_events` row, in COLUMNS order ('' and 0 for absent)."""
    r = record
    return (
        r["customer_id"], r["event_id"], r["user_id"], r.get("team_id") or "", r["wallet_id"], r["event_type"],
        r["feature_id"], r.get("provider") or "", r.get("model") or "",
        r.get("input_tokens") or 0, r.get("output_tokens") or 0, r.get("cached_input_tokens") or 0,
        r.get("image_count") or 0, r.get("image_size") or "", r.get("quality") or "", r.get("unit_type") or "",
        r.get("quantity") or ZERO, r.get("reservation_id") or "", r.get("source") or "", r.get("metadata") or {},
        r["timestamp"], r.get("received_at"), r["rated_at"], r["credits"], r["usd_cost"], r["revenue_usd"],
        r["margin_usd"], r.get("burn_table_id") or "", r.get("burn_table_version") or 0,
        r.get("price_version") or "", r.get("revision") or 0, topic, partition, offset,
    )


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
    refused = (DataError,)  # a value the client cannot serialise for its column: that row only
    unavailable = (DatabaseError,)

    def __init__(self, settings: Settings, topic: str):
        self.settings, self.topic = settings, topic
        self.memories: dict[int, PartitionMemory] = {}  # per partition; (re)loaded while cold
        self._client = None
        self._insert = None
        self._cold: set[int] = set()  # partitions whose memory must be (re)loaded from ClickHouse
        self._assigned: list[int] = []  # from the consumer's thread, taken into _cold by write()
        self._lock = threading.Lock()

    def to_row(self, record: Mapping, partition: int, offset: int) -> tuple:
        return to_row(record, self.topic, partition, offset)

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
                self._insert.data = fresh
                client.insert(context=self._insert)
            stored: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
            for row in fresh:
                stored[row[_PARTITION]].append((row[_CUSTOMER], row[_EVENT], row[_REVISION]))
            for partition, events in stored.items():
                self.memories[partition].recent.remember(events)
            return len(fresh)
        except DatabaseError:
            self._cold.update(partitions)  # the INSERT may be stored after all
            raise

    def _connect(self):
        if self._client is None:
            s = self.settings
            self._client = clickhouse_client.get_client(
                s, "writer", database=s.clickhouse_database, connect_timeout=5,
                send_receive_timeout=s.clickhouse_sink_timeout_s, compress="lz4", autogenerate_session_id=False)
            self._insert = usage_events.insert_context(self._client)
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
