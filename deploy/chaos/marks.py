"""Where the pipeline stands, from Kafka alone: each consumer group's committed offsets against
the partitions' watermarks. The soak reads it every second for the lag, and to tell when
everything acknowledged before a moment has gone all the way through (a `Chase`).

Counting the ledger's rows instead costs a query over millions of rows per poll; this costs
three admin calls, whatever the size of the topics.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from openmonetize.consumer_lag import partition_lag, pipeline_consumers
from openmonetize.settings import Settings
from schemas.topics import topics

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Marks:
    """One reading. The committed offsets are read before the watermarks, so an output
    acknowledged before a group committed past its input is below the watermark read after."""

    read_at: float  # time.monotonic() when the reading began
    low: dict[Partition, int]
    high: dict[Partition, int]
    committed: dict[tuple[str, str, int], int]  # (group, topic, partition) → offset, -1 if none

    def position(self, group: str, topic: str, partition: int) -> int:
        """Where the group stands: a group that never committed starts at the low watermark."""
        return max(self.committed.get((group, topic, partition), -1), self.low.get((topic, partition), 0))

    def lag(self, group: str, topic_names: list[str]) -> int:
        return sum(partition_lag(self.committed.get((group, t, p), -1), self.low[t, p], high)
                   for (t, p), high in self.high.items() if t in topic_names)


@dataclass
class Chase:
    """Everything in the pipeline at `created_at` (by monotonic clock) reaches the end: stage by
    stage, the groups of a stage commit past the watermarks its topics had when the stage began
    (the first stage: a reading begun after `created_at`). Advanced by whoever reads the marks."""

    stages: list[list[tuple[str, str]]]  # per stage: (group, topic)
    created_at: float = field(default_factory=time.monotonic)
    stage: int = 0
    targets: dict[tuple[str, str, int], int] | None = None
    done_at: float | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def advance(self, marks: Marks) -> bool:
        """True once done; `done_at` is the start of the reading that showed it."""
        while self.done_at is None:
            if self.targets is None:
                if marks.read_at < self.created_at:
                    return False  # a reading older than the chase may miss what it waits for
                self.targets = {(group, topic, p): high for group, topic in self.stages[self.stage]
                                for (t, p), high in marks.high.items() if t == topic}
            if any(marks.position(g, t, p) < target for (g, t, p), target in self.targets.items()):
                return False
            self.stage, self.targets = self.stage + 1, None
            if self.stage == len(self.stages):
                self.done_at = marks.read_at
                self.finished.set()
        return True

    def seconds(self) -> float | None:
        return None if self.done_at is None else round(self.done_at - self.created_at, 1)


def pipeline_stages(settings: Settings, clickhouse: bool = True) -> list[list[tuple[str, str]]]:
    """usage.events through the worker, then wallet.debits through it, then the sinks' topics
    (the Postgres ledger's alone when ClickHouse does not matter)."""
    t = topics(settings)
    sinks = [(settings.ledger_sink_group, t.ledger_entries.name)]
    if clickhouse:
        sinks.append((settings.clickhouse_sink_group, t.usage_rated.name))
    return [[(settings.worker_app_id, t.usage_events.name)], [(settings.worker_app_id, t.wallet_debits.name)], sinks]


class MarksReader:
    """Reads Marks of the pipeline's consumer groups (openmonetize/consumer_lag.py names them).

    The committed offsets come from a consumer per group that never joins it: an AdminClient
    kept across a broker restart timed out on every group-offsets request after it (the
    watermarks it still read), and new AdminClients made while the broker was away crashed the
    process (SIGSEGV in librdkafka)."""

    def __init__(self, settings: Settings, timeout_s: float = 3.0):
        self.consumers = pipeline_consumers(settings)  # (name, group, topics)
        self.timeout_s = timeout_s
        # log_level 0: a broker away is expected here, and librdkafka would print every failed connect
        quiet = {"bootstrap.servers": settings.kafka_bootstrap, "socket.timeout.ms": int(timeout_s * 1000),
                 "log_level": 0}
        self.admin = AdminClient(quiet)
        self.groups = {group: Consumer({**quiet, "group.id": group, "enable.auto.commit": False})
                       for _, group, _ in self.consumers}

    def read(self) -> Marks:
        """Raises KafkaException while the broker is away."""
        read_at = time.monotonic()
        existing = self.admin.list_topics(timeout=self.timeout_s).topics
        partitions = [TopicPartition(name, p) for name in sorted({n for _, _, names in self.consumers for n in names})
                      if name in existing for p in sorted(existing[name].partitions)]
        committed = {}
        for _, group, names in self.consumers:
            own = [TopicPartition(tp.topic, tp.partition) for tp in partitions if tp.topic in names]
            for tp in self.groups[group].committed(own, timeout=self.timeout_s):
                committed[group, tp.topic, tp.partition] = tp.offset
        return Marks(read_at, self._offsets(partitions, OffsetSpec.earliest()),
                     self._offsets(partitions, OffsetSpec.latest()), committed)

    def lags(self, marks: Marks) -> dict[str, int]:
        """consumer (worker, sink-ledger, sink-clickhouse) → records its group has not committed."""
        return {name: marks.lag(group, names) for name, group, names in self.consumers}

    def close(self) -> None:
        for consumer in self.groups.values():
            consumer.close()

    def _offsets(self, partitions: list[TopicPartition], spec: OffsetSpec) -> dict[Partition, int]:
        futures = self.admin.list_offsets({tp: spec for tp in partitions}, request_timeout=self.timeout_s)
        return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
