"""How far behind each consumer group of the pipeline is, read from Kafka alone: the group's
committed offsets against the partitions' watermarks (what `stack status` shows).

This is the group's view. The worker applies records ahead of what Faust commits and keeps its
own markers (stream_processors/applied_offsets.py), so its committed lag may read a little high
while it works; its own `openmonetize_worker_lag` metric is the exact figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from openmonetize.settings import Settings
from schemas.topics import topics


@dataclass(frozen=True)
class TopicLag:
    consumer: str  # worker, sink-ledger, sink-clickhouse
    group: str
    topic: str
    members: int  # consumers in the group now: 0 means nobody is reading
    partitions: dict[int, int]  # partition → records not yet consumed

    @property
    def total(self) -> int:
        return sum(self.partitions.values())

    @property
    def worst(self) -> tuple[int, int] | None:
        """(partition, lag) of the partition furthest behind, None when none is."""
        partition, lag = max(self.partitions.items(), key=lambda item: item[1], default=(None, 0))
        return (partition, lag) if lag else None

    def as_dict(self) -> dict:
        return {"consumer": self.consumer, "group": self.group, "topic": self.topic, "members": self.members,
                "lag": self.total, "partitions": {str(p): lag for p, lag in sorted(self.partitions.items())}}


def pipeline_consumers(settings: Settings) -> list[tuple[str, str, list[str]]]:
    """(consumer, group, topics it reads) of every consumer group of the pipeline."""
    t = topics(settings)
    return [
        ("worker", settings.worker_app_id, [t.usage_events.name, t.wallet_commands.name, t.wallet_debits.name]),
        ("sink-ledger", settings.ledger_sink_group, [t.ledger_entries.name]),
        ("sink-clickhouse", settings.clickhouse_sink_group, [t.usage_rated.name]),
    ]


def partition_lag(committed: int, low: int, high: int) -> int:
    """Records between the group's position and the high watermark. A group that never
    committed (negative offset) starts at the low watermark, like `auto.offset.reset=earliest`."""
    return max(high - max(committed, low), 0)


def read(settings: Settings, timeout_s: float = 5.0) -> list[TopicLag]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "socket.timeout.ms": int(timeout_s * 1000)})
    return consumer_lags(admin, pipeline_consumers(settings), timeout_s)


def consumer_lags(admin: AdminClient, consumers: list[tuple[str, str, list[str]]], timeout_s: float) -> list[TopicLag]:
    """One TopicLag per (consumer, topic) whose topic exists; raises KafkaException when Kafka
    does not answer within `timeout_s`."""
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = {name: sorted(existing[name].partitions) for _, _, names in consumers for name in names if name in existing}
    partitions = [TopicPartition(name, p) for name, numbers in wanted.items() for p in numbers]
    if not partitions:
        return []
    low = _offsets(admin, partitions, OffsetSpec.earliest(), timeout_s)
    high = _offsets(admin, partitions, OffsetSpec.latest(), timeout_s)
    groups = [group for _, group, _ in consumers]
    described = admin.describe_consumer_groups(groups, request_timeout=timeout_s)
    members = {group: len(future.result().members) for group, future in described.items()}

    lags = []
    for consumer, group, names in consumers:
        own = [tp for tp in partitions if tp.topic in names]
        if not own:
            continue
        request = [ConsumerGroupTopicPartitions(group, own)]
        [future] = admin.list_consumer_group_offsets(request, request_timeout=timeout_s).values()
        committed = {(tp.topic, tp.partition): tp.offset for tp in future.result().topic_partitions}
        for name in names:
            if name in wanted:
                lags.append(TopicLag(consumer, group, name, members.get(group, 0), {
                    p: partition_lag(committed.get((name, p), -1), low[name, p], high[name, p])
                    for p in wanted[name]}))
    return lags


def _offsets(admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec,
             timeout_s: float) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout_s)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


def table(lags: list[TopicLag]) -> str:
    """The lag lines of `stack status`: one per (consumer, topic)."""
    rows = [("consumer", "group", "topic", "members", "lag", "furthest behind")]
    for lag in lags:
        worst = lag.worst
        rows.append((lag.consumer, lag.group, lag.topic, str(lag.members), str(lag.total),
                     f"partition {worst[0]}: {worst[1]}" if worst else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)
