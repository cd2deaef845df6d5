"""An agent's source partitions read in batches, outside Faust's per-record consumer path.

Faust stays the host: group membership, the co-partitioning assignor, table recovery, the web
port and metrics are Faust's. But Faust hands an agent its records one at a time
(`_drain_messages` → `wait_first(...)` with its tasks, the conductor, an Event, an ack): about
200 µs of CPU per record per hop, measured (docs/operations/performance.md), more than the agents' own
work. So once Faust has assigned and recovered the partitions, each agent's source partitions
are paused in Faust's consumer (and in aiokafka's fetcher under it) and read by a
confluent-kafka consumer of our own, with no group, from the applied-offset markers
(applied_offsets.py), `batch_size` records at a time, straight into the agent's `handle`:

- start: after every recovery Faust seeks its stream partitions to their committed offsets;
  `AppliedOffsets.install` turns that into `start(markers)`: the source is (re)assigned there
  and Faust's fetching of them paused. Faust resumes them only at the next rebalance.
- revoke: Faust's `on_partitions_revoked` signal (awaited before the group rebalances) stops
  the loop and waits for the batch in hand, then unassigns: a partition is never applied by
  two workers at once, and the next owner starts at the markers this one saved last.
- before a batch writes anything, the agent commits its next offsets through the aiokafka
  consumer under Faust, as this worker's member and generation (`confirm_owner`): a worker the
  group dropped without telling it is refused there and abandons the batch (the first commit
  of a batch goes out while the batch is worked on, `confirming_owner`, and is waited for before
  its first write). Those commits are also what `stack status` and other lag tools read; they
  stay a hint, the markers are the truth.

Why not Kafka transactions per batch instead: they would still leave Faust's per-record path
in place, and the layers this project tests (markers, acknowledged outputs before state,
deterministic ids, idempotent sinks) already give the exactly-once effect under kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as KafkaTP
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from faust.types import TP
from prometheus_client import Counter

from openmonetize.kafka_clients import RECONNECT
from openmonetize.logs import get_logger
from stream_processors.applied_offsets import SourceRecord
from stream_processors.stall_watch import StallWatch

log = get_logger(__name__)

BATCHES = Counter("openmonetize_worker_batches_total", "Batches an agent read from its source partitions", ["agent"])
REBALANCE_WAIT_WARNING_S = 60.0
QUEUE_KBYTES = 16 * 1024


class PartitionsRevoked(Exception):
    """A rebalance began while a batch was being applied: the batch must not write anything more."""


class BatchSource:
    """One agent's source partitions: assigned at the markers, read in batches, handed to `handle`."""

    def __init__(self, app, name: str, bootstrap: str, topics: set[str],
                 handle: Callable[[list[SourceRecord]], Awaitable[None]],
                 batch_size: int, poll_s: float = 0.05):
        self.app = app
        self.name = name
        self.topics = topics
        self.handle = handle
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"{app.conf.id}-{name}-source",  # required by the client; never joined, never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
            # A fetch returns as soon as a record arrives (fetch.min.bytes 1): the wait only
            # bounds an empty answer. At 20 ms the four sources of an idle stack had the broker
            # answer ~200 empty fetches a second: 0.13 of a core for it, 0.05 at 500 ms.
            "fetch.wait.max.ms": 500,
            "queued.min.messages": 20_000,
            # What librdkafka reads ahead, at most (64 MiB by default): held resident, and more
            # under a backlog, where it matters least. QUEUE_KBYTES is ~16 full usage batches, ~3 wallet ones.
            "queued.max.messages.kbytes": QUEUE_KBYTES,
            **RECONNECT,
        })
        self.assigned: list[TopicPartition] = []
        self._lock = asyncio.Lock()  # held while a batch is read and applied: a revoke waits for it
        self._running = asyncio.Event()
        self.watch = StallWatch(name)
        self._waiting_since = 0.0  # since when read records wait for a rebalance to end
        self._warned = False

    async def start(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Read these partitions from these offsets (the markers), instead of Faust."""
        await self.stop()
        async with self._lock:
            self.assigned = [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
            await asyncio.to_thread(self.consumer.assign, self.assigned)
            self._pause_in_faust([TP(tp.topic, tp.partition) for tp in self.assigned])
            log.info("batch source assigned", agent=self.name,
                     partitions={f"{tp.topic}[{tp.partition}]": tp.offset for tp in self.assigned})
            if self.assigned:
                self._running.set()

    async def stop(self) -> None:
        """Stop reading: wait for the batch in hand, then give the partitions up. (No last commit
        of the group's offsets: it would go through Faust's consumer thread, which is waiting for
        this very revoke; they are a hint, at most a second behind the markers.)"""
        self._running.clear()
        async with self._lock:
            if self.assigned:
                await asyncio.to_thread(self.consumer.unassign)
                log.info("batch source revoked", agent=self.name, partitions=len(self.assigned))
                self.assigned = []

    async def confirm_owner(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """`check_owner`, then the group coordinator's word: commit `offsets` (the batch's next
        offsets; the group's offsets are only a hint for lag tools) as this worker's member and
        generation. An agent awaits it before each write of a batch.

        A worker can lose its partitions without being told: its heartbeats stopped (cause not
        found) and a rebalance completed without it, with static membership or without. It went on
        applying batches next to their new owner, each on its own copy of the wallets (one debit,
        two ledger entries with different balances, in the two-worker fault test). The
        coordinator refuses such a worker's commit (CommitFailedError), and aiokafka then rejoins
        the group: the batch is abandoned and the source waits for its next assignment. A
        successful commit also counts as a heartbeat, so the writes that follow it are made
        while the group still holds this worker as the owner (for the session timeout)."""
        self.check_owner()
        if offsets and not await self.app.consumer._thread.call_thread(self._commit_as_member, offsets):
            self._running.clear()
            raise PartitionsRevoked(f"{self.name}: the group coordinator no longer counts this worker as the owner")

    @contextlib.asynccontextmanager
    async def confirming_owner(self, offsets: Mapping[tuple[str, int], int]):
        """`confirm_owner(offsets)` begun at once and waited for when the block ends: the agent
        does the batch's work inside, and its first write after. The commit's round trip to the
        group coordinator (5-40 ms a batch on a busy 2-core box) then overlaps that work instead
        of preceding the write; the owner check is made again at the end."""
        confirming = asyncio.ensure_future(self.confirm_owner(offsets))
        try:
            yield
        except BaseException:
            confirming.cancel()
            raise
        await confirming
        self.check_owner()

    async def _commit_as_member(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """On Faust's consumer thread: commit through its aiokafka consumer; False when refused."""
        consumer = self.app.consumer._thread._ensure_consumer()
        wanted = {KafkaTP(topic, partition): OffsetAndMetadata(offset, "")
                  for (topic, partition), offset in offsets.items()}
        if not wanted.keys() <= consumer.assignment():
            return False
        try:
            await consumer.commit(wanted)
        except CommitFailedError as exc:
            log.warning("this worker is no longer the group's owner of its partitions; the batch is abandoned "
                        "and the worker rejoins", agent=self.name, error=str(exc))
            return False
        return True

    def check_owner(self) -> None:
        """Raise PartitionsRevoked once a revoke (or a new assignment) has begun.

        An agent calls it before each write of a batch. A worker whose batch was stuck past the
        group's rebalance timeout has lost its partitions to another worker, which starts from
        the markers: if the stuck batch then wrote its outputs and states, both would apply it
        (a debit charged twice, seen in the fault tests). Abandoned instead, the batch is applied
        once, by the new owner. (A stall between this check and the write it guards is still
        possible; Kafka transactions would close that window.)"""
        if not self._running.is_set():
            raise PartitionsRevoked(f"{self.name}: the partitions are being reassigned")

    async def run(self) -> None:
        """The loop: a batch from the assigned partitions, applied, again; idle while unassigned."""
        while True:
            await self._running.wait()
            async with self._lock:
                if not self._running.is_set():
                    continue
                self.watch.holding()
                try:
                    await self._one_batch()
                finally:
                    self.watch.released()

    async def _one_batch(self) -> None:
        """Read one batch and hand it to the agent (the caller holds the lock)."""
        messages = await asyncio.to_thread(self._next_batch)
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                # Transient (a broker away, a topic's metadata not there yet): librdkafka
                # retries on its own; the partition's position has not moved.
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("source read error; retrying", agent=self.name, error=str(error))
                continue
            kind, at_ms = message.timestamp()
            records.append(SourceRecord(message.topic(), message.partition(), message.offset(), message.key(),
                                        message.value(), at_ms / 1000 if kind else None))
        if records and (self.app.rebalancing or self.app.in_recovery):
            # Nothing can be applied until Faust has recovered the tables for this assignment.
            # Faust seeks the stream partitions (which starts this source) as soon as a
            # rebalance suspends its flow, BEFORE the recovery begins: a batch applied then
            # read a table not yet caught up with what the partitions' previous owner wrote.
            # And a recovery may end without the seek that would start us again at the markers
            # (`_set_recovery_ended` when nothing needs recovering). So the position is put
            # back and these records are read again once the rebalance has ended.
            self._waiting_since = self._waiting_since or time.monotonic()
            if time.monotonic() - self._waiting_since > REBALANCE_WAIT_WARNING_S and not self._warned:
                self._warned = True
                log.warning("records wait for Faust's rebalance and recovery to end", agent=self.name,
                            waiting_s=round(time.monotonic() - self._waiting_since))
            await asyncio.to_thread(self._rewind, records)
            await asyncio.sleep(self.poll_s)
            return
        self._waiting_since, self._warned = 0.0, False
        if records:
            BATCHES.labels(self.name).inc()
            try:
                await self.handle(records)
            except PartitionsRevoked:
                log.warning("batch abandoned: its partitions were revoked while it was applied; the next "
                            "owner applies it from the markers", agent=self.name, records=len(records))
                return

    def _next_batch(self) -> list:
        """What has arrived, as soon as something has, up to `batch_size`: `consume(n, timeout)`
        alone waits for n records or the whole timeout, which held every record of a steady
        trickle back by up to `poll_s` per hop. Under a backlog the local queue holds plenty,
        and batches are full."""
        first = self.consumer.poll(self.poll_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(self.batch_size - 1, timeout=0)] if self.batch_size > 1 else [first]

    def _rewind(self, records: list[SourceRecord]) -> None:
        first: dict[tuple[str, int], int] = {}
        for record in records:
            first.setdefault((record.topic, record.partition), record.offset)
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def highwater(self, topic: str, partition: int) -> int | None:
        """The partition's high watermark as last fetched (for the lag gauge), or None."""
        try:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        except KafkaException:
            return None
        return high if high is not None and high >= 0 else None

    def _pause_in_faust(self, tps: list[TP]) -> None:
        """Stop Faust delivering these partitions, and aiokafka fetching them underneath.

        aiokafka's `pause` only flags the partitions' state, which its fetcher reads before each
        request: called from here, not through the consumer thread's `call_thread`, which
        deadlocked when the seek that calls this was itself waiting on that thread."""
        consumer = self.app.consumer
        consumer.pause_partitions(tps)
        aiokafka_consumer = consumer._thread._ensure_consumer()  # faust's aiokafka driver
        wanted = {(tp.topic, tp.partition) for tp in tps}
        aiokafka_consumer.pause(*(tp for tp in aiokafka_consumer.assignment() if (tp.topic, tp.partition) in wanted))
