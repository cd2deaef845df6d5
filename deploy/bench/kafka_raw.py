"""Raw Kafka throughput on this broker with confluent-kafka: the ceiling the pipeline is read against.

Produces N records of SIZE bytes to a fresh topic (acks=all, idempotent, lz4 off: the records
are random and would not compress), then consumes them all back. Each figure is the median of
--runs runs; the spread (min-max) is printed beside it.

    python -m deploy.bench.kafka_raw --records 1000000 --size 1024 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from deploy.bench.results import RESULTS, merge_results
from openmonetize.settings import get_settings


def produce(bootstrap: str, topic: str, records: int, size: int) -> float:
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
    })
    payloads = [os.urandom(size) for _ in range(1024)]
    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value=payloads[i & 1023], key=str(i % 997).encode())
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered")
    return records / elapsed


def consume(bootstrap: str, topic: str, partitions: int, records: int) -> float:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    start = time.perf_counter()
    deadline = start + 300
    while seen < records and time.perf_counter() < deadline:
        seen += sum(1 for m in consumer.consume(10_000, timeout=1.0) if m.error() is None)
    elapsed = time.perf_counter() - start
    consumer.close()
    if seen < records:
        raise RuntimeError(f"consumed {seen} of {records}")
    return records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=1024, help="record value size in bytes")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bootstrap = get_settings().kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    produced, consumed = [], []
    for run in range(args.runs):
        topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result()
        try:
            produced.append(produce(bootstrap, topic, args.records, args.size))
            consumed.append(consume(bootstrap, topic, args.partitions, args.records))
        finally:
            admin.delete_topics([topic])[topic].result()
        print(f"run {run + 1}: produce {produced[-1]:,.0f} rec/s, consume {consumed[-1]:,.0f} rec/s", flush=True)
    for name, values in (("produce", produced), ("consume", consumed)):
        mb = statistics.median(values) * args.size / 1e6
        print(
            f"{name}: median {statistics.median(values):,.0f} records/s ({mb:,.0f} MB/s), "
            f"spread {min(values):,.0f}-{max(values):,.0f}, {args.records:,} x {args.size} B, "
            f"{args.partitions} partitions, {args.runs} runs"
        )
    merge_results({
        f"kafka_raw_produce_{args.size}b_records_per_s": round(statistics.median(produced)),
        f"kafka_raw_consume_{args.size}b_records_per_s": round(statistics.median(consumed)),
    })
    print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
