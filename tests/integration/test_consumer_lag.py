"""Consumer lag read from a real broker, and `stack status` showing it."""

from __future__ import annotations

import subprocess
import sys

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from openmonetize.consumer_lag import consumer_lags, pipeline_consumers
from tests.conftest import unique


def test_lag_per_partition_from_committed_offsets_and_watermarks(settings):
    topic, group = unique("lag-topic"), unique("lag-group")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for partition, count in ((0, 10), (1, 4)):
        for i in range(count):
            producer.produce(topic, b"x", partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 6)], asynchronous=False)
    consumer.close()
    try:
        [lag] = consumer_lags(admin, [("probe", group, [topic, unique("missing")])], timeout_s=10)
        assert (lag.consumer, lag.group, lag.topic, lag.members) == ("probe", group, topic, 0)
        assert lag.partitions == {0: 4, 1: 4, 2: 0}  # partition 1 never committed: all of it is ahead
        assert lag.worst in ((0, 4), (1, 4)) and lag.total == 8
    finally:
        admin.delete_topics([topic])


def test_stack_status_shows_every_pipeline_consumer_with_members(settings):
    result = subprocess.run([sys.executable, "-m", "openmonetize", "stack", "status", "--json"],
                            capture_output=True, text=True, timeout=60)
    status = orjson.loads(result.stdout)
    assert status["consumer_lag_error"] is None
    shown = {(row["consumer"], row["group"], row["topic"]) for row in status["consumer_lag"]}
    assert shown == {(consumer, group, topic) for consumer, group, topics in pipeline_consumers(settings)
                     for topic in topics}
    assert all(row["members"] >= 1 for row in status["consumer_lag"]), status["consumer_lag"]
    assert all(len(row["partitions"]) == settings.kafka_partitions for row in status["consumer_lag"])
