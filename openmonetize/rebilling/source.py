"""Where a replay reads: the offsets of usage.events that can hold events of a time range, the
retention check, and the read itself, partition by partition in parallel processes.

An event's `timestamp` is its own time, not when it reached Kafka: the pipeline accepts events
up to EVENT_MAX_AGE_S old and EVENT_MAX_FUTURE_S ahead of the clock. So the records of events in
[from, to) were produced between from − EVENT_MAX_FUTURE_S and to + EVENT_MAX_AGE_S: the read
seeks each partition there by record time (`offsets_for_times`) and filters on the event's
own timestamp. A range older than what the topic still holds is refused, naming the gap.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from operator import is_not

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from openmonetize.logs import get_logger

log = get_logger(__name__)

_IS_ERROR = partial(is_not, None)
SEEK_MARGIN = timedelta(minutes=1)  # producer clocks and linger: record time is a little after the edge's
BATCH = 10_000
FORK_WAIT_S = 5.0  # how long the readers' fork waits for the process's other threads to end


class RetentionError(RuntimeError):
    """The topic no longer holds part of the range; the message says which part and why."""


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int  # first offset to read
    end: int  # offset after the last to read

    @property
    def size(self) -> int:
        return max(self.end - self.start, 0)


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "openmonetize-replay",  # never joined nor committed: partitions are assigned
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "queued.min.messages": 200_000,
        "fetch.wait.max.ms": 50,
    })


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def plan(bootstrap: str, topic: str, start: datetime, end: datetime, max_age: timedelta, max_future: timedelta,
         retention_ms: int, now: datetime | None = None, timeout_s: float = 10.0) -> list[PartitionRange]:
    """The offsets to read per partition; RetentionError when the topic no longer holds all of it."""
    now = now or datetime.now(timezone.utc)
    seek_from = start - max_future - SEEK_MARGIN
    read_until = end + max_age + SEEK_MARGIN
    oldest_kept = now - timedelta(milliseconds=retention_ms)
    if retention_ms >= 0 and start < oldest_kept:
        raise RetentionError(
            f"--from {start.isoformat()} is older than {topic}'s retention (retention.ms: "
            f"{retention_ms / 86_400_000:g} days): events before {oldest_kept.isoformat()} are deleted or due to be; "
            f"replay from {oldest_kept.isoformat()} at the earliest")
    consumer = _consumer(bootstrap)
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        low_high = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s) for p in partitions}
        firsts = consumer.offsets_for_times([TopicPartition(topic, p, _ms(seek_from)) for p in partitions], timeout_s)
        lasts = consumer.offsets_for_times([TopicPartition(topic, p, _ms(read_until)) for p in partitions], timeout_s)
        missing = []
        for p in partitions:
            low, _high = low_high[p]
            if low > 0:  # something was deleted: is the first record kept younger than the range?
                kept_from = _record_time(consumer, topic, p, low, timeout_s)
                if kept_from is not None and kept_from > seek_from:
                    missing.append(f"partition {p} keeps records from {kept_from.isoformat()} only")
        if missing:
            raise RetentionError(
                f"{topic} no longer holds the start of the range (retention deleted it): {'; '.join(missing)}. "
                f"Replay from the latest of those times, or restore the events from a backup first")
        ranges = []
        for first, last in zip(firsts, lasts):
            low, high = low_high[first.partition]
            begin = high if first.offset < 0 else max(first.offset, low)  # < 0: no record that late
            stop = high if last.offset < 0 else last.offset
            ranges.append(PartitionRange(first.partition, begin, stop))
        return ranges
    finally:
        consumer.close()


def topic_retention_ms(bootstrap: str, topic: str, default: int) -> int:
    """The topic's retention.ms as the broker has it (-1: forever), else `default`."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    # The client must outlive its future: a temporary one is destroyed as soon as the call returns,
    # and its request then fails (_DESTROY) or is never answered (a 10 s hang).
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        configs = admin.describe_configs([resource])[resource].result(10)
        return int(configs["retention.ms"].value)
    except (KafkaException, KeyError, ValueError, TimeoutError):
        return default


def _record_time(consumer: Consumer, topic: str, partition: int, offset: int, timeout_s: float) -> datetime | None:
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                return datetime.fromtimestamp(message.timestamp()[1] / 1000, timezone.utc)
        return None
    finally:
        consumer.unassign()


def batches(bootstrap: str, topic: str, part: PartitionRange, progress: Callable[[int], None] | None = None
            ) -> Iterator[list[tuple[bytes | None, bytes]]]:
    """The (key, value) of every record of the partition range, in offset order, a consumed
    batch at a time (a list: the caller's loop, not a generator, steps through the records)."""
    if part.size == 0:
        return
    consumer = _consumer(bootstrap)
    key, value = Message.key, Message.value
    try:
        consumer.assign([TopicPartition(topic, part.partition, part.start)])
        position = part.start
        idle_since = time.monotonic()
        while position < part.end:
            # consume() waits for BATCH records or the timeout: short, or the tail of a range waits.
            batch = consumer.consume(BATCH, timeout=0.1)
            if not batch:
                if time.monotonic() - idle_since > 30:
                    raise KafkaException(f"{topic}[{part.partition}]: no record at offset {position} for 30 s")
                continue
            idle_since = time.monotonic()
            for error in filter(_IS_ERROR, map(Message.error, batch)):
                raise KafkaException(error)
            last = batch[-1].offset()
            if last >= part.end:  # the range ends inside this batch
                batch = [m for m in batch if m.offset() < part.end]
                last = part.end - 1
            position = last + 1
            if batch:
                yield list(zip(map(key, batch), map(value, batch)))
            if progress is not None:
                progress(len(batch))
    finally:
        consumer.close()


def workers(setting: int, partitions: int) -> int:
    """Processes for the read: the setting, or one per core; never more than partitions."""
    return max(1, min(setting or os.cpu_count() or 1, partitions))


def run_parallel(tasks: list, work: Callable, processes: int, on_tick: Callable[[int], None] | None = None) -> list:
    """`work(task, counter)` over the tasks in `processes` forked processes (inline for 1).

    Fork, not spawn: the children inherit what the parent loaded (the catalog, the ledger's
    charges) without pickling it, and start in milliseconds. `counter` is a shared count of
    records read; `on_tick(total)` is called about twice a second while the work runs, and once
    at the end.
    """
    global _SHARED
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            on_tick(counter.value)

    ticker = threading.Thread(target=tick, daemon=True) if on_tick is not None else None
    try:
        inline = processes <= 1
        if not inline and not _single_threaded(FORK_WAIT_S):
            log.warning("replay_readers_inline", reason="a thread is still running: forking now could hang a reader")
            inline = True
        if inline:
            if ticker is not None:
                ticker.start()
            return [work(task, counter) for task in tasks]
        _SHARED = (work, counter)
        with ctx.Pool(processes) as pool:  # every child is forked here, before the ticker thread exists
            if ticker is not None:
                ticker.start()
            return pool.map(_call, tasks, chunksize=1)
    finally:
        _SHARED = None
        stop.set()
        if ticker is not None and ticker.is_alive():
            ticker.join()
        if on_tick is not None:
            on_tick(counter.value)


_SHARED = None


def _single_threaded(wait_s: float) -> bool:
    """Whether this process is down to its one thread, waiting up to `wait_s` for exiting ones.

    A forked child inherits every lock as it was at the fork. A thread that used librdkafka (the
    catalog's background read) still runs its exit handlers under the global lock of
    librdkafka's OpenSSL after `Thread.join()` has returned; a reader forked in that moment finds
    the lock held forever and hangs in its consumer's close (test_replay, sessions 7 and 8).
    Without /proc (not Linux) the count is not known and the fork goes ahead."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            threads = len(os.listdir("/proc/self/task"))
        except OSError:
            return True
        if threads == 1:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def _call(task):
    work, counter = _SHARED
    return work(task, counter)
