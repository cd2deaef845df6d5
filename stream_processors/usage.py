"""The usage agent: `usage.events` → decode → time window → dedupe → rate → route → `wallet.debits`.

Per batch (read by its BatchSource, batch_source.py), in this order, like the wallet agent:
1. each record is decoded, checked, deduplicated, rated and routed by the pure step
   (openmonetize/usage_step.py); what cannot be charged goes to `usage.dlq` with the reason and
   the original bytes;
2. the rated events (keyed by wallet id, for the wallet agent) and DLQ records are sent and
   ACKNOWLEDGED;
3. the dedupe entries and then each partition's next offset (`applied_offsets`) are written to
   the `usage-seen` table's changelog (acknowledged, one librdkafka write per partition), then
   to its local store.
A crash between 2 and 3 forwards the batch again; the wallet agent skips the re-delivered
event ids (`WalletState.seen`), so nothing is charged twice.

Dedupe lives here, co-partitioned with `usage.events` (key `customer:user`): a client retry has
the same body, so the same key and partition. Limit: a reused event_id with a different
user_id lands on another partition and is charged as a new event, not flagged as a conflict.

The table holds, per event, 16 bytes of key (BLAKE2b of customer and event id) and 12 of value
(8 bytes of body hash, the event time in 4), in RocksDB; a batch's entries of a partition go
to its changelog as one packed record (changelog_packs.py). The changelog is compacted AND deleted
after the accepted age plus a day: an event older than the window is refused as `too_old`
before dedupe, so an entry past it is never needed again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as CounterOf
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from confluent_kafka import KafkaException
from prometheus_client import Counter

from openmonetize import metrics
from openmonetize.catalog.index import CatalogIndex
from openmonetize.kafka_producer import AckedProducer
from openmonetize.logs import get_logger
from openmonetize.settings import Settings
from openmonetize.usage_step import DUPLICATE, RATED, Decision, Inputs, Window, usage_step
from schemas.dlq_reasons import Reason
from schemas.topics import Topics
from stream_processors.applied_offsets import AppliedOffsets, plain_marker_key
from stream_processors.batch_source import BatchSource
from stream_processors.changelog_packs import pack
from stream_processors.codecs import Codecs
from stream_processors.outputs import dlq_record, handle_or_exit, oldest_timestamp_s, send_all_as_owner, send_to_partitions
from stream_processors.stores import PartitionStores, table_options

log = get_logger(__name__)

EVENTS = Counter("openmonetize_usage_events_total", "Usage events by outcome", ["outcome"])
OUT_OF_ORDER = Counter(
    "openmonetize_usage_source_out_of_order_total",
    "usage.events records Faust delivered out of order: duplicate deliveries, or missing and read directly",
    ["why"],
)
CATCH_UP_S = 2.0
CATCH_UP_GIVE_UP_S = 60.0
CLOCK_SKEW_S = 1.0


class ViewNotCurrent(RuntimeError):
    """A view the batch must see to its end (the catalog, the wallet directory) could not be read there."""


class UsageAgent:
    def __init__(
        self,
        app,
        registry_topics: Topics,
        codecs: Codecs,
        producer: AckedProducer,
        catalog: CatalogIndex,
        wallet_exists: Callable[[str], bool],
        wallets_catch_up: Callable[[float], bool],
        settings: Settings,
    ):
        spec = registry_topics.usage_events
        self.topics = registry_topics
        self.codecs = codecs
        self.producer = producer
        self.catalog = catalog
        self.wallets_catch_up = wallets_catch_up
        self.caught_up_at = 0.0  # wall clock, comparable with the records' produce timestamps
        self.window = Window(timedelta(seconds=settings.event_max_age_s), timedelta(seconds=settings.event_max_future_s))
        self.topic_name = spec.name
        self.source = app.topic(spec.name, key_serializer="raw", value_serializer="raw")
        retention_s = settings.event_max_age_s + 86_400  # an entry outlives the events it can refuse by a day
        self.seen = app.Table(
            "usage-seen",
            partitions=spec.partitions,
            key_type=bytes,
            value_type=bytes,
            extra_topic_configs={
                "cleanup.policy": "compact,delete",
                "retention.ms": str(retention_s * 1000),
            },
            options=table_options(),
        )
        self.seen_stores = PartitionStores(self.seen)
        self.inputs = Inputs(catalog, wallet_exists, self.seen_stores.lookup)
        self.applied = AppliedOffsets(
            app, self.seen, {spec.name}, spec.partitions, settings.kafka_bootstrap, key_for=plain_marker_key
        )
        self.reader = BatchSource(app, "usage", settings.kafka_bootstrap, {spec.name},
                                  lambda records: handle_or_exit(self.handle, records, "usage"),
                                  batch_size=settings.worker_batch_size)
        self.applied.install(app.consumer, self.reader.start)

    async def run(self, stream) -> None:
        """The Faust agent only holds the subscription: `self.reader` reads the partitions in
        batches (batch_source.py). A record Faust hands over anyway was fetched before the
        pause; the reader reads it from the markers."""
        async for _event in stream:
            pass

    async def handle(self, records) -> None:
        """Apply one batch of usage.events records (SourceRecord: topic, partition, offset, key,
        value, timestamp)."""
        messages, duplicates, filled = await self.applied.in_order(records)
        OUT_OF_ORDER.labels("duplicate").inc(duplicates)
        OUT_OF_ORDER.labels("gap_read").inc(filled)
        advanced = {(self.topic_name, m.partition): m.offset + 1 for m in messages}
        async with self.reader.confirming_owner(advanced):
            if self._needs_catch_up(messages):
                await asyncio.to_thread(self._catch_up)
            now = datetime.now(timezone.utc)
            debits, dlq, charged = self._decide(messages, now)
        await send_all_as_owner(self.producer, [(self.topics.wallet_debits.name, debits),
                                                (self.topics.usage_dlq.name, dlq)], self.reader, advanced)
        metrics.observe_stage_latency("usage", oldest_timestamp_s(messages))
        # The dedupe entries (packed: changelog_packs.py), then the marker that covers them,
        # reach the table's changelog as one acknowledged librdkafka write per partition (in
        # order: one producer keeps a partition's order), after the debits are acknowledged: an
        # entry must never be durable before its charge. Then the local store, which the
        # changelog now backs.
        markers = self.applied.entries(advanced)
        written = await send_to_partitions(self.producer, self.seen.changelog_topic.get_topic_name(), {
            partition: pack(charged.get(partition, {}).items()) + markers.get(partition, [])
            for partition in charged.keys() | markers.keys()})
        for partition, entries in charged.items():
            self.seen_stores.write(partition, entries.items())
        self.applied.save_local(advanced, written)

    def _decide(self, messages, now: datetime) -> tuple[list, list, dict]:
        """The batch's debits and DLQ records, and its new dedupe entries per partition."""
        decisions, charged = usage_step(((m.partition, m.value) for m in messages), self.codecs.usage_event.decode,
                                        self.inputs, self.window, now)
        debits: list[tuple[bytes, bytes]] = []
        dlq: list[tuple[bytes, bytes]] = []
        outcomes: CounterOf[str] = CounterOf()
        for message, decision in zip(messages, decisions):
            outcome = decision.outcome
            outcomes[outcome] += 1
            if outcome == RATED:
                debits.append(self._debit(message, decision, now))
            elif outcome != DUPLICATE:
                if outcome == Reason.PROCESSING_ERROR:
                    log.error("usage event could not be processed; sent to the DLQ", partition=message.partition,
                              offset=message.offset, exc_info=decision.error)
                dlq.append(dlq_record(self.codecs, message, outcome, decision.stage, decision.detail,
                                      decision.record, now))
        for outcome, count in outcomes.items():
            EVENTS.labels(outcome).inc(count)
        return debits, dlq, charged

    def _needs_catch_up(self, messages) -> bool:
        """Only events produced after the last catch-up began (less a margin for clock skew
        between hosts) can depend on something the views have not read: a backlog needs none."""
        since = self.caught_up_at - CLOCK_SKEW_S
        return any(getattr(m, "timestamp", None) is None or m.timestamp >= since for m in messages)

    def _catch_up(self) -> None:
        """Read the catalog and wallet.directory up to their ends before the batch (one watermark
        query each): a burn table, a setting or a purchase that was acknowledged before an event
        was produced is in force for that event (openmonetize/wallet_directory.py).

        A view that cannot get there is waited for, not skipped: rating or routing with a stale
        view would charge the wrong price (the default burn table instead of one just created)
        or the wrong wallet. After CATCH_UP_GIVE_UP_S the batch fails, and the worker exits and
        reads it again once restarted (handle_or_exit)."""
        self.caught_up_at = time.time()
        deadline = time.monotonic() + CATCH_UP_GIVE_UP_S
        for name, catch_up in (("billing.catalog", self.catalog.wait_until_current),
                               ("wallet.directory", self.wallets_catch_up)):
            while True:
                try:
                    if catch_up(CATCH_UP_S):
                        break
                    log.warning("a view is not current yet; the batch waits for it", view=name)
                except KafkaException as exc:  # e.g. NOT_LEADER just after a broker restart
                    log.warning("a view could not ask Kafka for its end; the batch waits for it", view=name,
                                error=str(exc))
                    time.sleep(0.2)
                if time.monotonic() > deadline:
                    raise ViewNotCurrent(f"{name} was not read to its end within {CATCH_UP_GIVE_UP_S:.0f} s")

    def _debit(self, message, decision: Decision, now: datetime) -> tuple[bytes, bytes]:
        """A rated event for the wallet agent: the event's own bytes and the charge's fields."""
        rating = {
            **decision.charge,
            "rated_at": now,
            "revision": 0,
            "source_partition": message.partition,  # how the wallet agent recognises a debit sent twice
            "source_offset": message.offset,
        }
        return (decision.charge["wallet_id"].encode(),
                self.codecs.rated_from_event.encode(message.value, decision.record, rating))
