"""An in-process view of a compacted topic: the latest value of every key, kept current.

What fast reads are served from (DESIGN: "Reads that must be fast come from in-process views
fed by compacted topics, never from a database round trip per request"): the API's entitlement
checks read `wallet.balances`, the stream workers read the billing catalog (burn tables,
prices, tenant settings). Every process reads EVERY partition, from the beginning, without a
consumer group (a group would split the partitions between processes), on a background thread.

`wait_until_current()` blocks until the view has read up to the end offsets that existed when it
was called: a process can serve once its view is warm, and a test can wait for a write it made.
`on_update` (for readers keeping indexes of their own) runs on the view's thread before the
record counts as read, so after `wait_until_current()` those indexes are current too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from openmonetize.kafka_clients import RECONNECT
from openmonetize.logs import get_logger

log = get_logger(__name__)
V = TypeVar("V")
REOPEN_AFTER_S = 10.0


class CompactedView(Generic[V]):
    """Latest decoded value per key of one topic. A record with a null value deletes its key."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        decode: Callable[[bytes], V],
        on_update: Callable[[str, V | None], None] | None = None,
    ):
        self.topic = topic
        self._bootstrap = bootstrap
        self._decode = decode
        self._on_update = on_update
        self._values: dict[str, V] = {}
        self._positions: dict[int, int] = {}
        self._lock = threading.RLock()  # re-entrant: on_update runs holding it and may call items()
        self._progress = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._reopen = threading.Event()  # set by a reader that saw the view stuck; the view's thread acts
        self.reopened = 0
        self._stalled_since: float | None = None
        self._consumer = self._new_consumer()
        self._partitions = self._discover()
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._thread = threading.Thread(target=self._run, name=f"view-{topic}", daemon=True)
        self.decode_errors = 0
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()

    def start(self) -> CompactedView[V]:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()

    def get(self, key: str) -> V | None:
        return self._values.get(key)

    def items(self) -> list[tuple[str, V]]:
        with self._lock:
            return list(self._values.items())

    def __len__(self) -> int:
        return len(self._values)

    def wait_until_current(self, timeout_s: float = 30.0) -> bool:
        """Block until everything written to the topic before this call has been read."""
        with self._probe_lock:
            if self._probe is None:
                # A client of its own, kept (a new one costs a connection): the view's consumer
                # is busy in its thread, and clients aren't shared between threads.
                self._probe = Consumer({"bootstrap.servers": self._bootstrap, "group.id": f"view-probe-{self.topic}"})
            # Every partition's end in one ListOffsets request (timestamp -1 is "latest" in
            # Kafka's protocol): a worker asks before each batch of fresh events, and one
            # watermark query per partition was one round trip each.
            answers = self._probe.offsets_for_times(
                [TopicPartition(self.topic, p, OFFSET_END) for p in self._partitions], timeout=timeout_s)
            for answer in answers:
                if answer.error is not None or answer.offset < 0:
                    raise KafkaException(answer.error or f"{self.topic}[{answer.partition}]: no end offset")
            ends = {answer.partition: answer.offset for answer in answers}
        began = time.monotonic()
        deadline = began + timeout_s
        with self._progress:
            started_at = dict(self._positions)
            while not all(self._positions.get(p, 0) >= end for p, end in ends.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    self._note_stalled(began, moved=self._positions != started_at)
                    return False
                self._progress.wait(left)
        self._stalled_since = None
        return True

    def _note_stalled(self, began: float, moved: bool) -> None:
        """A wait ended with the view behind ends that Kafka gave: behind and not moving for
        REOPEN_AFTER_S in a row, it asks its thread for a new consumer (`_reopen_consumer`)."""
        if moved:
            self._stalled_since = None
            return
        self._stalled_since = self._stalled_since or began
        if time.monotonic() - self._stalled_since >= REOPEN_AFTER_S:
            self._stalled_since = None
            self._reopen.set()

    # --- internals ---------------------------------------------------------------------------
    def _new_consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self._bootstrap,
            "group.id": f"view-{self.topic}",  # required by the client; never joined (assign, no commit)
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **RECONNECT,
        })

    def _reopen_consumer(self) -> None:
        """A new consumer, assigned where this one had read to.

        After a broker restart, an assign()ed librdkafka consumer was seen to stop fetching for
        good while the broker answered everything else (`make chaos`: the worker's catalog view
        stayed behind for 60 s, until the worker gave up and restarted; librdkafka issue #5153,
        open, whose workaround is a new consumer). A reader whose wait found the view behind and
        not moving asks for this; the records already read are not read again."""
        with self._lock:
            positions = dict(self._positions)
        old, self._consumer = self._consumer, self._new_consumer()
        old.close()
        self._consumer.assign([TopicPartition(self.topic, p, positions.get(p, OFFSET_BEGINNING))
                               for p in self._partitions])
        self.reopened += 1
        log.warning("compacted_view_reopened", topic=self.topic, positions=positions)

    def _discover(self) -> list[int]:
        metadata = self._consumer.list_topics(self.topic, timeout=10)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise KafkaException(f"topic {self.topic} not found: {topic.error if topic else 'no metadata'}")
        return sorted(topic.partitions)

    def _next_messages(self) -> list:
        """What arrived, as soon as something did: `consume(n, timeout)` alone waits for n
        records or the whole timeout, which held every update back up to 200 ms."""
        first = self._consumer.poll(0.2)
        if first is None:
            return []
        return [first, *self._consumer.consume(999, timeout=0)]

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._reopen.is_set():
                self._reopen.clear()
                self._reopen_consumer()
            try:
                messages = self._next_messages()
            except KafkaException as exc:
                log.warning("compacted_view_consume_failed", topic=self.topic, error=str(exc))
                continue
            if not messages:
                self._mark_idle_positions()
                continue
            updates = []
            for message in messages:
                if message.error() is not None:
                    continue
                key = message.key().decode() if message.key() else ""
                if message.value() is None:
                    updates.append((key, None))
                    continue
                try:
                    updates.append((key, self._decode(message.value())))
                except Exception as exc:  # noqa: BLE001 - a bad record must not stop the view
                    self.decode_errors += 1
                    log.warning("compacted_view_bad_record", topic=self.topic, key=key, error=str(exc))
            with self._progress:
                for key, decoded in updates:
                    if decoded is None:
                        self._values.pop(key, None)
                    else:
                        self._values[key] = decoded
                if self._on_update is not None:
                    for key, decoded in updates:
                        self._on_update(key, decoded)
                for message in messages:
                    partition = message.partition()
                    self._positions[partition] = max(self._positions.get(partition, 0), message.offset() + 1)
                self._progress.notify_all()

    def _mark_idle_positions(self) -> None:
        """With nothing to read, our position on each partition is its current consumer position."""
        positions = self._consumer.position([TopicPartition(self.topic, p) for p in self._partitions])
        with self._progress:
            for tp in positions:
                if tp.offset >= 0:
                    self._positions[tp.partition] = max(self._positions.get(tp.partition, 0), tp.offset)
            self._progress.notify_all()
