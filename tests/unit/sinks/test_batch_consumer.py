"""BatchConsumer's loop with an in-memory consumer and store (sinks/batch_consumer.py): when a
batch is committed (after the store has it, and also while nothing more arrives), how a batch is
retried while the store is down (partitions paused, then resumed), and what a revoke does to the
batch in flight (finished and committed) and to the one being read or retried (abandoned
uncommitted, for the partitions' next owner)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

from sinks import batch_consumer
from sinks.batch_consumer import BatchConsumer, SinkConfig, commit_positions
from tests.conftest import eventually

TOPIC = "topic"


class Message:
    def __init__(self, partition: int, offset: int):
        self._partition, self._offset = partition, offset

    def error(self):
        return None

    def value(self) -> bytes:
        return b"v"

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, int(time.time() * 1000)


def records(partition: int, *offsets: int) -> list[Message]:
    return [Message(partition, offset) for offset in offsets]


def once_paused(step: Callable[[FakeConsumer], list[Message]]) -> Callable[[FakeConsumer], list[Message] | None]:
    """A step played by the first poll after the sink paused its partitions: the keep-alive poll
    of a retry, not the read of the next batch."""
    return lambda consumer: step(consumer) if consumer.paused else None


class FakeConsumer:
    """Answers each `consume` (and `poll`, one record of it) with the next step of `script`: a list of messages, or a callable
    (given the consumer) that returns them, e.g. after calling the revoke callback, or None for
    "not yet" (the step is kept for the next poll). Once the script is played, nothing more
    arrives. Records commits, pauses, resumes and seeks."""

    def __init__(self, script: list[list[Message] | Callable[[FakeConsumer], list[Message]]]):
        self.script = list(script)
        self.partitions = [0]
        self.commits: list[dict[int, int]] = []
        self.paused: list[list[int]] = []
        self.resumed: list[list[int]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.polls = 0
        self.lock = threading.Lock()

    def subscribe(self, topics, on_assign, on_revoke):
        self.on_revoke = on_revoke
        on_assign(self, [SimpleNamespace(partition=p) for p in self.partitions])

    def revoke(self) -> None:
        """What librdkafka does in a rebalance: the callback, then the partitions are gone."""
        self.on_revoke(self, [SimpleNamespace(partition=p) for p in self.partitions])
        self.partitions = []

    def consume(self, count: int, timeout: float):
        with self.lock:
            self.polls += 1
            step = self.script.pop(0) if self.script else None
        found = step(self) if callable(step) else step
        if found is None:
            if step is not None:
                with self.lock:
                    self.script.insert(0, step)
            time.sleep(min(timeout, 0.02))  # a poll that times out
            return []
        return found

    def poll(self, timeout: float):
        """One record: the first of the next step; the step's others stay for the next read."""
        found = self.consume(1, timeout)
        if not found:
            return None
        if found[1:]:
            with self.lock:
                self.script.insert(0, found[1:])
        return found[0]

    def commit(self, offsets, asynchronous: bool):
        assert not asynchronous
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def assignment(self):
        return [batch_consumer.TopicPartition(TOPIC, p) for p in self.partitions]

    def pause(self, partitions):
        self.paused.append([tp.partition for tp in partitions])

    def resume(self, partitions):
        self.resumed.append([tp.partition for tp in partitions])

    def seek(self, tp):
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def get_watermark_offsets(self, tp, cached: bool):
        return 0, 3

    def close(self):
        pass


class Store:
    """Keeps what it is given; down (ConnectionError) for the first `down_for` writes, or for
    every write while `down` is set."""

    name = "unit"
    unavailable = (ConnectionError,)
    refused = (ValueError,)

    def __init__(self, down_for: int = 0, down: bool = False):
        self.rows: list = []
        self.attempts = 0
        self.down_for = down_for
        self.down = down

    def read(self, codec, value, partition: int, offset: int):
        return (partition, offset), codec.decode(value)

    def write(self, rows: list) -> int:
        self.attempts += 1
        if self.down or self.attempts <= self.down_for:
            raise ConnectionError("store away")
        self.rows += rows
        return len(rows)

    def assigned(self, partitions):
        pass

    def close(self):
        pass


class Running:
    """A sink run in a thread with `consumer` and `store`; stopped (and joined) on exit."""

    def __init__(self, monkeypatch, consumer: FakeConsumer, store: Store, batch_rows: int = 100):
        monkeypatch.setattr(batch_consumer, "Consumer", lambda config: consumer)
        monkeypatch.setattr(batch_consumer.signal, "signal", lambda *args: None)  # not the main thread
        settings = SimpleNamespace(kafka_bootstrap="unused", metrics_host="127.0.0.1", sink_session_timeout_s=10)
        config = SinkConfig(TOPIC, "group", batch_rows=batch_rows, batch_ms=10, max_backoff_s=0.05, metrics_port=0)
        self.sink = BatchConsumer(settings, config, SimpleNamespace(decode=lambda value: {}, resolver=None), store)
        self.thread = threading.Thread(target=self.sink.run, daemon=True)

    def __enter__(self) -> BatchConsumer:
        self.thread.start()
        return self.sink

    def __exit__(self, *exc) -> None:
        self.sink.stopping = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the sink did not stop"


def test_commit_positions_is_the_highest_offset_plus_one_per_partition():
    assert commit_positions([(0, 5), (1, 2), (0, 7), (0, 6)]) == {0: 8, 1: 3}
    assert commit_positions([]) == {}


def test_an_idle_sink_commits_the_batch_it_wrote(monkeypatch):
    consumer, store = FakeConsumer([records(0, 0, 1, 2)]), Store()
    with Running(monkeypatch, consumer, store):
        # committed while the sink is still running, with nothing more to read
        eventually(lambda: {0: 3} in consumer.commits, timeout_s=5, what="the batch's commit")
        assert store.rows == [(0, 0), (0, 1), (0, 2)]
    assert consumer.commits == [{0: 3}]


def test_a_batch_is_retried_while_the_store_is_down_with_its_partitions_paused(monkeypatch):
    consumer, store = FakeConsumer([records(0, 0, 1, 2)]), Store(down_for=3)
    with Running(monkeypatch, consumer, store):
        eventually(lambda: consumer.commits, timeout_s=5, what="the batch's commit once the store is back")
        assert store.attempts == 4  # three failed writes, then the one that stored it
        assert store.rows == [(0, 0), (0, 1), (0, 2)]  # once
        assert consumer.paused == [[0]] and consumer.resumed == [[0]]  # paused while retrying, then resumed
    assert consumer.commits == [{0: 3}]  # committed once, after the store had it


def test_a_record_read_while_retrying_is_put_back_for_the_next_batch(monkeypatch):
    """A rebalance during the retry may assign a partition unpaused: what the keep-alive poll
    reads from it is sought back, never dropped."""
    stray = Message(1, 7)
    consumer, store = FakeConsumer([records(0, 0, 1, 2), once_paused(lambda _: [stray])]), Store(down_for=2)
    with Running(monkeypatch, consumer, store, batch_rows=3):
        eventually(lambda: consumer.commits, timeout_s=5, what="the retried batch's commit")
    assert consumer.seeks == [(TOPIC, 1, 7)]
    assert consumer.commits == [{0: 3}]


def test_a_revoke_commits_the_batch_in_flight_and_abandons_the_one_being_read(monkeypatch):
    writing = threading.Event()

    def revoke(consumer: FakeConsumer) -> list[Message]:
        consumer.revoke()
        writing.set()
        return []

    consumer, store = FakeConsumer([records(0, 0, 1, 2), records(0, 3, 4), revoke]), Store()
    with Running(monkeypatch, consumer, store, batch_rows=3):
        eventually(writing.is_set, timeout_s=5, what="the revoke")
    assert consumer.commits == [{0: 3}]  # the batch in flight, committed while the partition was still ours
    assert store.rows == [(0, 0), (0, 1), (0, 2)]  # offsets 3 and 4: never written, the next owner re-reads them


def test_a_revoke_while_a_batch_is_retried_abandons_it_uncommitted(monkeypatch):
    revoked = threading.Event()

    def revoke(consumer: FakeConsumer) -> list[Message]:
        consumer.revoke()
        revoked.set()
        return []

    consumer, store = FakeConsumer([records(0, 0, 1, 2), once_paused(revoke)]), Store(down=True)
    with Running(monkeypatch, consumer, store, batch_rows=3) as sink:
        eventually(revoked.is_set, timeout_s=5, what="the revoke during the retry")
        eventually(lambda: not sink._retrying, timeout_s=5, what="the retry to give the batch up")
        attempts, polls = store.attempts, consumer.polls
        store.down = False  # the store is back: the abandoned batch must not be written now
        eventually(lambda: consumer.polls >= polls + 5, timeout_s=5, what="the sink to read on after the revoke")
    assert consumer.commits == [] and store.rows == []
    assert store.attempts == attempts
    assert consumer.paused == [[0]]
    assert not any(consumer.resumed)  # the partition is no longer ours: nothing to resume


def test_stopping_finishes_the_batch_in_hand_and_commits_it(monkeypatch):
    consumer, store = FakeConsumer([records(0, 0, 1)]), Store()
    with Running(monkeypatch, consumer, store, batch_rows=100) as sink:
        eventually(lambda: store.rows or sink._batch.positions, timeout_s=5, what="the batch read")
    assert consumer.commits == [{0: 2}] and store.rows == [(0, 0), (0, 1)]


def test_stopping_while_the_store_is_down_gives_the_batch_up_uncommitted(monkeypatch):
    """SIGTERM during an outage must not wait for the store to come back: the batch is read again
    after the restart."""
    consumer, store = FakeConsumer([records(0, 0, 1)]), Store(down=True)
    with Running(monkeypatch, consumer, store) as sink:
        eventually(lambda: store.attempts >= 2, timeout_s=5, what="the batch retried")
    assert sink.stopping  # and Running joined the sink's thread: it stopped while the store was down
    assert consumer.commits == [] and store.rows == []
