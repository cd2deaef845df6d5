"""BatchConsumer's loop with an in-memory consumer and store: a batch written while nothing more
arrives is committed then, not when the next record comes (an idle sink must not show lag)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from sinks import batch_consumer
from sinks.batch_consumer import BatchConsumer, SinkConfig
from tests.conftest import eventually


class Message:
    def __init__(self, partition: int, offset: int):
        self._partition, self._offset = partition, offset

    def error(self):
        return None

    def value(self) -> bytes:
        return b"v"

    def key(self) -> bytes:
        return b"k"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, int(time.time() * 1000)


class FakeConsumer:
    """Hands out `pending` once, then nothing; records commits."""

    def __init__(self, pending: list[Message]):
        self.pending = pending
        self.commits: list[dict[int, int]] = []

    def subscribe(self, topics, on_assign, on_revoke):
        on_assign(self, [SimpleNamespace(partition=0)])

    def consume(self, count: int, timeout: float):
        if self.pending:
            taken, self.pending = self.pending[:count], self.pending[count:]
            return taken
        time.sleep(min(timeout, 0.05))
        return []

    def commit(self, offsets, asynchronous: bool):
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def get_watermark_offsets(self, tp, cached: bool):
        return 0, 3

    def assignment(self):
        return []

    def close(self):
        pass


class Store:
    name = "unit"
    unavailable = (ConnectionError,)
    refused = (ValueError,)

    def __init__(self):
        self.rows: list = []

    def read(self, codec, value, partition: int, offset: int):
        return (partition, offset), codec.decode(value)

    def write(self, rows: list) -> int:
        self.rows += rows
        return len(rows)

    def assigned(self, partitions):
        pass

    def close(self):
        pass


def test_an_idle_sink_commits_the_batch_it_wrote(monkeypatch):
    consumer = FakeConsumer([Message(0, 0), Message(0, 1), Message(0, 2)])
    monkeypatch.setattr(batch_consumer, "Consumer", lambda config: consumer)
    monkeypatch.setattr(batch_consumer.signal, "signal", lambda *args: None)  # not the main thread
    sink = BatchConsumer(SimpleNamespace(kafka_bootstrap="unused", metrics_host="127.0.0.1", sink_session_timeout_s=10),
                         SinkConfig("topic", "group", batch_rows=100, batch_ms=10, max_backoff_s=1, metrics_port=0),
                         SimpleNamespace(decode=lambda value: {}, resolver=None), Store())
    runner = threading.Thread(target=sink.run, daemon=True)
    runner.start()
    try:
        # committed while the sink is still running, with nothing more to read
        eventually(lambda: {0: 3} in consumer.commits, timeout_s=5, what="the batch's commit")
        assert sink.store.rows == [(0, 0), (0, 1), (0, 2)]
    finally:
        sink.stopping = True
        runner.join(10)
    assert consumer.commits == [{0: 3}]
