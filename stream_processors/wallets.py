"""The wallet agent: the single writer of every wallet's balance.

It reads `wallet.commands` and `wallet.debits` (co-partitioned, keyed by wallet_id), in
batches (its BatchSource, batch_source.py), groups each batch by wallet, applies each wallet's records in order
with the pure step (`wallet_step.apply_records`), and then, in this order:

1. sends every output (ledger entries, rated usage, balances, DLQ records) and waits until
   Kafka has ACKNOWLEDGED all of them;
2. writes each changed wallet's state to the `wallets` table once per batch, and after the
   states the next offset to apply for each source partition of the batch (`applied_offsets`):
   where reading resumes after a crash or rebalance, instead of the group's committed offset,
   which Faust was seen to move past unapplied records. States and markers go to the table's
   changelog as one acknowledged write per partition (in order), then to the local store.

A crash between 1 and 2 re-delivers the batch: the state does not have it, so it is applied
again and produces the same outputs with the same deterministic ids, which the sinks drop. A
record below its partition's marker, or whose id the wallet's `recent_ids` holds, is skipped
as already applied. A wallet's state lives in its source partition of the table (changelog
and local store alike); the table is declared `use_partitioner` because, with the same key
bytes, partitioner (murmur2) and partition count as the source topics, that is also where
Faust's own partitioner would put it.
"""

from __future__ import annotations

from collections import Counter as CounterOf
from collections.abc import Callable
from datetime import datetime, timezone

import faust
from prometheus_client import Counter

from openmonetize import metrics
from openmonetize.kafka_producer import AckedProducer
from openmonetize.logs import get_logger
from schemas.codec import DecodeError
from schemas.dlq_reasons import Reason, Stage
from schemas.topics import Topics
from stream_processors import wallet_state_codec
from stream_processors.applied_offsets import AppliedOffsets
from stream_processors.codecs import Codecs
from stream_processors.batch_source import BatchSource
from stream_processors.outputs import dlq_record, handle_or_exit, oldest_timestamp_s, send_all_as_owner, send_to_partitions
from stream_processors.stores import PartitionStores, table_options
from stream_processors.wallet_step import apply_records, balance_record, ledger_record

log = get_logger(__name__)

RECORDS = Counter("openmonetize_wallet_records_total", "Records the wallet agent read, by kind", ["kind"])
DUPLICATES = Counter("openmonetize_wallet_duplicates_total", "Re-delivered records the wallet agent skipped")
SKIPPED = Counter(
    "openmonetize_wallet_source_out_of_order_total",
    "Records Faust delivered out of order: below the applied offset (duplicate), or missing and read directly",
    ["why"],
)
REFUSED = Counter("openmonetize_wallet_refused_total", "Records the wallet agent sent to the DLQ", ["reason"])


class WalletAgent:
    def __init__(
        self,
        app: faust.App,
        registry_topics: Topics,
        codecs: Codecs,
        producer: AckedProducer,
        policy_for: Callable[[str], str],
        bootstrap: str,
        batch_size: int,
    ):
        self.topics = registry_topics
        self.codecs = codecs
        self.producer = producer
        self.policy_for = policy_for
        commands = registry_topics.wallet_commands
        self.source = app.topic(
            commands.name, registry_topics.wallet_debits.name, key_serializer="raw", value_serializer="raw"
        )
        self.table = app.Table(
            "wallets",
            partitions=commands.partitions,
            use_partitioner=True,
            key_type=bytes,  # bytes types make Faust use the raw serializer, changelog recovery included
            value_type=bytes,
            options=table_options(),
        )
        self.stores = PartitionStores(self.table)
        sources = {commands.name, registry_topics.wallet_debits.name}
        self.applied = AppliedOffsets(app, self.table, sources, commands.partitions, bootstrap)
        self.reader = BatchSource(app, "wallets", bootstrap, sources,
                                  lambda records: handle_or_exit(self.handle, records, "wallets"),
                                  batch_size=batch_size)
        self.applied.install(app.consumer, self.reader.start)

    async def run(self, stream) -> None:
        """The Faust agent only holds the subscription: `self.reader` reads the partitions in
        batches (batch_source.py). A record Faust hands over anyway was fetched before the
        pause; the reader reads it from the markers."""
        async for _event in stream:
            pass

    async def handle(self, messages) -> None:
        messages, duplicates, filled = await self.applied.in_order(messages)
        SKIPPED.labels("duplicate").inc(duplicates)
        SKIPPED.labels("gap_read").inc(filled)
        advanced = {(m.topic, m.partition): m.offset + 1 for m in messages}
        async with self.reader.confirming_owner(advanced):
            ledger, rated, balances, dlq, states, partition_of = self._apply(messages, datetime.now(timezone.utc))
        await send_all_as_owner(self.producer, [
            (self.topics.ledger_entries.name, ledger),
            (self.topics.usage_rated.name, rated),
            (self.topics.wallet_balances.name, balances),
            (self.topics.usage_dlq.name, dlq),
        ], self.reader, advanced)
        metrics.observe_stage_latency("wallet", oldest_timestamp_s(messages))
        # Each changed state, then the markers that cover it, reach the table's changelog as one
        # acknowledged librdkafka write per partition (one producer keeps a partition's order, so
        # a marker is never durable before the states it covers); then the local store. A state
        # goes to its wallet's source partition, where it is read back (PartitionStores), which
        # under co-partitioning is also where murmur2 on the wallet id would place it.
        per_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for wallet_id, state in states.items():
            per_partition.setdefault(partition_of[wallet_id], []).append(
                (wallet_id.encode(), wallet_state_codec.dumps(state)))
        changelog = {partition: list(entries) for partition, entries in per_partition.items()}
        for partition, markers in self.applied.entries(advanced).items():
            changelog.setdefault(partition, []).extend(markers)
        written = await send_to_partitions(self.producer, self.table.changelog_topic.get_topic_name(), changelog)
        for partition, entries in per_partition.items():
            self.stores.write(partition, entries)
        self.applied.save_local(advanced, written)

    def _apply(self, messages, now: datetime) -> tuple[list, list, list, list, dict, dict]:
        """The batch applied to its wallets' states: the ledger entries, rated usage, balances and
        DLQ records to send, each changed wallet's state, and each wallet's partition."""
        per_wallet: dict[str, list[tuple[str, dict]]] = {}
        origin: dict[str, object] = {}
        partition_of: dict[str, int] = {}  # wallet → its source (and changelog) partition
        forward: dict[int, bytes] = {}  # id() of a decoded debit → its bytes, already a usage.rated record
        dlq: list[tuple[bytes, bytes]] = []
        kinds: CounterOf[str] = CounterOf()
        for message in messages:
            kind = "command" if message.topic == self.topics.wallet_commands.name else "debit"
            codec = self.codecs.wallet_command if kind == "command" else self.codecs.debit
            kinds[kind] += 1
            try:
                record = codec.decode(message.value)
            except DecodeError as exc:
                REFUSED.labels(Reason.DECODE_ERROR).inc()
                dlq.append(self._dlq(message, Reason.DECODE_ERROR, str(exc), None, now))
                continue
            per_wallet.setdefault(record["wallet_id"], []).append((kind, record))
            partition_of[record["wallet_id"]] = message.partition
            if kind == "debit":
                forward[id(record)] = message.value
            origin[record["command_id"] if kind == "command" else record["event_id"]] = message

        for kind, count in kinds.items():
            RECORDS.labels(kind).inc(count)
        ledger, rated, balances, states = [], [], [], {}
        readers = self.stores.readers(set(partition_of.values()))
        for wallet_id, records in per_wallet.items():
            raw = readers[partition_of[wallet_id]](wallet_id.encode())
            try:
                result = apply_records(
                    wallet_state_codec.loads(raw) if raw else None, wallet_id, records, policy=self.policy_for(records[0][1]["customer_id"]),
                    now=now,
                )
            except Exception as exc:  # a bug must not stop the partition: park the wallet's records, say why
                log.exception("wallet records could not be applied; sent to the DLQ", wallet_id=wallet_id)
                for kind, record in records:
                    REFUSED.labels(Reason.PROCESSING_ERROR).inc()
                    source_id = record["command_id"] if kind == "command" else record["event_id"]
                    dlq.append(self._dlq(origin[source_id], Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}",
                                         record, now))
                continue
            DUPLICATES.inc(result.duplicates)
            for record, rejected in result.rejected:
                REFUSED.labels(rejected.reason).inc()
                dlq.append(self._dlq(origin[rejected.source_id], rejected.reason, rejected.detail, record, now))
            key = wallet_id.encode()
            ledger += [(key, self.codecs.ledger_entry.encode(ledger_record(e, now))) for e in result.ledger]
            # A debit charged unchanged goes on to usage.rated as the very bytes it came in (the
            # usage agent encoded it with usage.rated's schema): no second encoding.
            rated += [(f"{r['customer_id']}:{r['user_id']}".encode(), forward[id(r)])
                      for r in result.rated]
            if result.changed:
                states[wallet_id] = result.state
                balances.append((key, self.codecs.wallet_balance.encode(balance_record(result.state, now, result.applied_ids))))
        return ledger, rated, balances, dlq, states, partition_of

    def _dlq(self, message, reason: str, detail: str, record: dict | None, now: datetime) -> tuple[bytes, bytes]:
        return dlq_record(self.codecs, message, reason, Stage.DEBIT, detail, record, now)
