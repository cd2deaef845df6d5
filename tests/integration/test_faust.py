"""A Faust worker consumes a topic on the local broker, with exactly-once processing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import eventually, unique

APP = Path(__file__).with_name("faust_echo_app.py")


def test_faust_worker_consumes_and_produces_transactionally(settings, tmp_path):
    source, sink, app_id = unique("faust_src"), unique("faust_sink"), unique("faust_app")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(source, 2, 1), NewTopic(sink, 2, 1)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    sent = [f"event-{i}".encode() for i in range(200)]
    for value in sent:
        producer.produce(source, value=value)
    assert producer.flush(30) == 0

    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, str(APP), app_id, source, sink, str(tmp_path / "data"), "worker", "-l", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[2],
    )
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": unique("reader"),
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",  # only what the worker's transactions committed
    })
    consumer.subscribe([sink])
    received: list[bytes] = []

    def all_echoed():
        assert worker.poll() is None, f"worker exited: {(tmp_path / 'worker.log').read_text()[-2000:]}"
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error() is None:
                received.append(msg.value())
        return len(received) >= len(sent)

    try:
        eventually(all_echoed, timeout_s=90, interval_s=0, what="the worker's output")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        consumer.close()
        log.close()
    assert sorted(received) == sorted(v.upper() for v in sent)
