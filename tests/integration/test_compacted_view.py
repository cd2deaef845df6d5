"""The in-process view of a compacted topic: every partition, latest value per key, tombstones."""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from openmonetize import compacted_view
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


def test_a_view_that_stopped_fetching_gets_a_new_consumer_and_reads_on_from_where_it_was(settings, monkeypatch):
    """librdkafka #5153: an assign()ed consumer may stop fetching after a broker restart. A first
    consumer that returns nothing stands in for it here: the view falls behind, does not move,
    and after REOPEN_AFTER_S of waits that found it so, its thread opens a new consumer at its
    positions."""
    monkeypatch.setattr(compacted_view, "REOPEN_AFTER_S", 1.0)
    topic = unique("test_view_stuck")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1, config={"cleanup.policy": "compact"})])[topic].result()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(20):
        producer.produce(topic, key=f"k{i}", value=str(i).encode())
    producer.flush(10)
    updates: list[str] = []
    view = CompactedView(settings.kafka_bootstrap, topic, lambda b: int(b), on_update=lambda k, v: updates.append(k))
    view.start()
    try:
        assert current(view, 30) and len(updates) == 20
        fetching, stuck = view._next_messages, threading.Event()

        def first_consumer_stuck() -> list:
            if view.reopened:
                return fetching()
            stuck.set()
            return []

        view._next_messages = first_consumer_stuck
        assert stuck.wait(10)
        stuck.clear()
        assert stuck.wait(10)  # a whole call began after the swap: no read of the old kind is in flight
        for i in range(20, 30):
            producer.produce(topic, key=f"k{i}", value=str(i).encode())
        producer.flush(10)

        deadline = time.monotonic() + 30
        waits_behind = 0
        while not view.wait_until_current(0.5):
            waits_behind += 1
            assert time.monotonic() < deadline, "the view never caught up"
        assert waits_behind >= 2  # it was stuck before it was reopened
        assert view.reopened == 1
        assert all(view.get(f"k{i}") == i for i in range(30))
        assert sorted(updates) == sorted(f"k{i}" for i in range(30))  # nothing read twice
    finally:
        view.close()


def current(view: CompactedView, timeout_s: float) -> bool:
    """`wait_until_current`, asked again while a topic just created has no leader yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return view.wait_until_current(timeout_s)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # poll interval while the new topic's leader is elected
