"""The local broker is a real Kafka: produce and consume with confluent-kafka, topics as declared."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from schemas.topics import topics
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
