"""The local broker is a real Kafka: produce and consume with confluent-kafka, topics as declared."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from openmonetize.kafka_topics import ensure_topics
from openmonetize.rebilling.source import topic_retention_ms
from schemas.topics import TopicSpec, topics
from tests.conftest import eventually, unique


def test_project_topics_exist_with_declared_partitions_and_config(settings):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    registry = topics(settings)
    for spec in registry.all():
        assert spec.name in metadata, f"{spec.name} missing"
        assert len(metadata[spec.name].partitions) == spec.partitions
    resources = [ConfigResource(ConfigResource.Type.TOPIC, registry.wallet_balances.name),
                 ConfigResource(ConfigResource.Type.TOPIC, registry.usage_events.name)]
    configs = {res.name: fut.result() for res, fut in admin.describe_configs(resources).items()}
    assert configs[registry.wallet_balances.name]["cleanup.policy"].value == "compact"
    assert configs[registry.usage_events.name]["retention.ms"].value == str(settings.usage_events_retention_ms)


def test_produce_and_consume_round_trip_keeps_per_key_order(settings):
    topic = unique("test_roundtrip")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    sent = [(f"user-{i % 7}".encode(), f"{i}:{'x' * 100}".encode()) for i in range(3000)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": unique("g"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    received: list[tuple[bytes, bytes]] = []

    def all_received():
        for msg in consumer.consume(1000, timeout=0.5):
            assert msg.error() is None, msg.error()
            received.append((msg.key(), msg.value()))
        return len(received) >= len(sent)

    eventually(all_received, timeout_s=30, interval_s=0, what="3000 records")
    consumer.close()
    assert sorted(received) == sorted(sent) and len(received) == len(sent)
    # One key lives in one partition, so its records come back in the order they were sent.
    for key in {k for k, _ in sent}:
        assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]


def test_ensure_topics_creates_then_grows_partitions_and_aligns_config(settings):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    name = unique("test_ensure")
    spec = TopicSpec(name, 2, 1, "usage_event.avsc", {"retention.ms": "1000000"})
    assert ensure_topics(admin, [spec]) == [name]
    eventually(lambda: name in admin.list_topics(timeout=5).topics, timeout_s=15, what="the new topic's metadata")
    wider = TopicSpec(name, 3, 1, "usage_event.avsc", {"retention.ms": "2000000"})
    assert ensure_topics(admin, [wider]) == []

    def aligned():
        partitions = len(admin.list_topics(name, timeout=5).topics[name].partitions)
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        retention = admin.describe_configs([resource])[resource].result()["retention.ms"].value
        return partitions == 3 and retention == "2000000"

    eventually(aligned, timeout_s=15, what="3 partitions and the new retention")


def test_replay_reads_a_topics_retention_from_the_broker_every_time(settings):
    # The guard rail of `openmonetize replay` (no range older than usage.events keeps). A client
    # dropped before its answer came used to fall back to the default, or hang 10 s.
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    name = unique("test_retention")
    ensure_topics(admin, [TopicSpec(name, 1, 1, "usage_event.avsc", {"retention.ms": "1234567"})])
    eventually(lambda: name in admin.list_topics(timeout=5).topics, timeout_s=15, what="the new topic's metadata")
    assert [topic_retention_ms(settings.kafka_bootstrap, name, default=-2) for _ in range(5)] == [1234567] * 5
