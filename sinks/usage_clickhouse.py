"""The ClickHouse sink: `usage.rated` → `usage_events` (and, through its materialized views, the
hourly and daily rollups).

One consumer group (CLICKHOUSE_SINK_GROUP), batches of CLICKHOUSE_SINK_BATCH_ROWS rows or
CLICKHOUSE_SINK_BATCH_MS, one INSERT per batch, offsets committed after it (sinks/batch_consumer.py:
retries while ClickHouse is down).

Why the sink drops copies itself: `usage_events` is a ReplacingMergeTree, so a copy of an event
collapses into one row under FINAL; but the rollups are fed by materialized views, which see
every INSERT and would count a copy twice. Copies come from two places: this sink replaying a
batch it stored but had not committed (crash, outage), and the wallet agent emitting a rated
event again after a worker crash (a few seconds later on the same partition: the topic is keyed
by customer and user). So the sink remembers the (customer, event id, revision) of the last
CLICKHOUSE_SINK_RECENT_IDS rows it inserted and drops a row it has seen at the same or a higher
revision. That memory is loaded from ClickHouse itself (the rows of the assigned partitions from
just before the committed offset onwards) when partitions are assigned and after any failed
INSERT (which may have been stored although the answer was lost), before the next write.
A replay that re-rates events writes them with a higher revision: those pass.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from decimal import Decimal

from clickhouse_connect.driver.exceptions import DatabaseError, DataError

from openmonetize import clickhouse_client
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from sinks.batch_consumer import BatchConsumer, SinkConfig, reader_codec_with_retry

log = get_logger(__name__)

TABLE = "usage_events"
COLUMNS = (
    "customer_id", "event_id", "user_id", "team_id", "wallet_id", "event_type", "feature_id", "provider", "model",
    "input_tokens", "output_tokens", "cached_input_tokens", "image_count", "image_size", "quality", "unit_type",
    "quantity", "reservation_id", "source", "metadata", "timestamp", "received_at", "rated_at", "credits",
    "usd_cost", "revenue_usd", "margin_usd", "burn_table_id", "burn_table_version", "price_version", "revision",
    "kafka_topic", "kafka_partition", "kafka_offset",
)
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

    def fresh(self, rows: Iterable[tuple]) -> list[tuple]:
        """The rows not stored yet at their revision (a copy within `rows` counts once)."""
        out, batch = [], {}
        for row in rows:
            key, revision = hash((row[_CUSTOMER], row[_EVENT])), row[_REVISION]
            if max(self._revisions.get(key, -1), batch.get(key, -1)) >= revision:
                continue
            batch[key] = revision
            out.append(row)
        return out

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


class ClickHouseStore:
    """`usage_events` over clickhouse-connect; drops copies of rows already stored (see above)."""

    name = "clickhouse"
    refused = (DataError,)  # a value the client cannot serialise for its column: that row only
    unavailable = (DatabaseError,)

    def __init__(self, settings: Settings, topic: str):
        self.settings, self.topic = settings, topic
        self.recent = RecentEvents(settings.clickhouse_sink_recent_ids)
        self._client = None
        self._insert = None
        self._cold: set[int] = set()  # partitions whose stored rows are not loaded into `recent` yet
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
        try:
            client = self._connect()
            self._cold.update(row[_PARTITION] for row in rows)  # after a failure: maybe stored after all
            if self._cold:
                self._load_recent(client, rows)
            fresh = self.recent.fresh(rows)
            if fresh:
                self._insert.data = fresh
                client.insert(context=self._insert)
            self.recent.remember((row[_CUSTOMER], row[_EVENT], row[_REVISION]) for row in fresh)
            return len(fresh)
        except DatabaseError:
            self._cold.update(row[_PARTITION] for row in rows)
            raise

    def _connect(self):
        if self._client is None:
            s = self.settings
            self._client = clickhouse_client.get_client(
                s, "writer", database=s.clickhouse_database, connect_timeout=5,
                send_receive_timeout=s.clickhouse_sink_timeout_s, compress="lz4", autogenerate_session_id=False)
            self._insert = self._client.create_insert_context(TABLE, list(COLUMNS))
        return self._client

    def _load_recent(self, client, rows: list[tuple]) -> None:
        """Remember what ClickHouse already holds of the cold partitions, from just before their
        committed offsets (the lowest offset of `rows` stands for it) to their end."""
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
            f"SELECT customer_id, event_id, revision FROM {TABLE} "
            f"WHERE kafka_topic = {{topic:String}} AND ({' OR '.join(conditions)}) ORDER BY kafka_offset",
            parameters=params).result_rows
        self.recent.remember(found)
        self._cold.difference_update(partitions)
        log.info("clickhouse_sink_recent_loaded", partitions=partitions, rows=len(found), remembered=len(self.recent))

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
