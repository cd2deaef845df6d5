"""The in-process view of a compacted topic: every partition, latest value per key, tombstones."""

from __future__ import annotations

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from openmonetize.compacted_view import CompactedView
from tests.conftest import unique


def test_view_follows_latest_values_and_tombstones(settings):
    topic = unique("test_view")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1, config={"cleanup.policy": "compact"})])[topic].result()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(300):
        producer.produce(topic, key=f"k{i % 30}", value=str(i).encode())
    producer.flush(10)

    seen: list[tuple[str, int | None]] = []
    view = CompactedView(settings.kafka_bootstrap, topic, lambda b: int(b), on_update=lambda k, v: seen.append((k, v)))
    view.start()
    try:
        assert view.wait_until_current(30)
        assert len(view) == 30
        assert all(view.get(f"k{j}") == 270 + j for j in range(30))

        producer.produce(topic, key="k1", value=b"1000")
        producer.produce(topic, key="k2", value=None)  # tombstone: the key is deleted
        producer.produce(topic, key="k3", value=b"not a number")  # undecodable: skipped, counted
        producer.flush(10)
        assert view.wait_until_current(30)
        assert view.get("k1") == 1000 and view.get("k2") is None and view.get("k3") == 273
        assert view.decode_errors == 1 and len(view) == 29
        assert ("k1", 1000) in seen and ("k2", None) in seen
    finally:
        view.close()


def test_wait_until_current_on_an_empty_topic_returns_at_once(settings):
    topic = unique("test_view_empty")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1, config={"cleanup.policy": "compact"})])[topic].result()
    view = CompactedView(settings.kafka_bootstrap, topic, bytes).start()
    try:
        assert view.wait_until_current(10) and len(view) == 0
    finally:
        view.close()
