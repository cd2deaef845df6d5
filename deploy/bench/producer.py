"""UsageProducer throughput on the running stack: validate + encode + produce + flush, end to end.

Generates N realistic events (producers/loadgen.py, one tenant), then for each of --runs runs
produces them all with `UsageProducer.produce_many` into a fresh topic (acks=all, idempotent,
lz4) and waits for every acknowledgement. Prints the median and spread of events/s, and the
split per stage measured separately on the same events: validate (the event contract:
convert_event + to_record), encode (the specialised Avro encoder; fastavro alongside for
reference), produce (confluent-kafka `produce` of the encoded records, then the flush).
Merges the median into bench-results.json under `producer_events_per_s`.

    python -m deploy.bench.producer --events 500000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import schemaless_writer

from openmonetize.settings import get_settings
from producers.loadgen import EventGenerator
from deploy.bench.results import RESULTS, merge_results
from producers.usage_producer import UsageProducer



def fresh_topic(admin: AdminClient, partitions: int) -> str:
    topic = f"bench.producer.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    return topic


def per_event_us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def split(producer: UsageProducer, events: list[dict], sample: int) -> dict[str, float]:
    """µs per event of each stage, measured one stage at a time over the same events."""
    now = datetime.now(timezone.utc)
    gc.collect()
    start = time.perf_counter()
    records = [producer.validate(e, now) for e in events]
    validate = per_event_us(time.perf_counter() - start, len(events))

    start = time.perf_counter()
    values = [producer.encode(r) for r in records]
    encode = per_event_us(time.perf_counter() - start, len(records))

    subset = records[:sample]  # the reference encoder, for comparison
    schema, out = producer.codec.schema, io.BytesIO()
    start = time.perf_counter()
    for record in subset:
        schemaless_writer(out, schema, record)
    fastavro = per_event_us(time.perf_counter() - start, len(subset))

    keys = [f"{producer.customer_id}:{r['user_id']}" for r in records]
    send, poll = producer._producer.produce, producer._producer.poll
    topic = producer.topic
    start = time.perf_counter()
    for i, (key, value) in enumerate(zip(keys, values)):
        while True:
            try:
                send(topic, value, key)
                break
            except BufferError:
                poll(0.01)
        if i % 1000 == 0:
            poll(0)
    produced = time.perf_counter()
    remaining = producer.flush(120)
    flushed = time.perf_counter()
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered")
    return {
        "validate_us": validate,
        "encode_us": encode,
        "encode_fastavro_us": fastavro,
        "produce_us": per_event_us(produced - start, len(values)),
        "flush_after_produce_us": per_event_us(flushed - produced, len(values)),
    }


def end_to_end(producer: UsageProducer, events: list[dict]) -> float:
    gc.collect()
    start = time.perf_counter()
    producer.produce_many(events)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining or producer.failed:
        raise RuntimeError(f"{remaining} undelivered, {producer.failed} failed")
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args()
    settings = get_settings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    customer_id = f"cus_bench_{uuid.uuid4().hex[:8]}"

    started = time.perf_counter()
    events = EventGenerator(args.seed, [customer_id], 1000, duplicate_share=0.0, late_share=0.01).batch(args.events)
    print(f"generated {len(events):,} events in {time.perf_counter() - started:.1f}s", flush=True)

    topic = fresh_topic(admin, args.partitions)
    try:
        with UsageProducer(customer_id, settings=settings, topic=topic) as producer:
            stages = split(producer, events, sample=min(len(events), 50_000))
    finally:
        admin.delete_topics([topic])
    total = stages["validate_us"] + stages["encode_us"] + stages["produce_us"]
    print(
        f"split (µs/event): validate {stages['validate_us']:.2f}, encode {stages['encode_us']:.2f} "
        f"(fastavro {stages['encode_fastavro_us']:.2f}), produce {stages['produce_us']:.2f}, "
        f"then flush {stages['flush_after_produce_us']:.2f}; sum of the three {total:.2f} "
        f"= {1e6 / total:,.0f} events/s",
        flush=True,
    )

    rates = []
    for run in range(args.runs):
        topic = fresh_topic(admin, args.partitions)
        try:
            with UsageProducer(customer_id, settings=settings, topic=topic) as producer:
                rates.append(end_to_end(producer, events))
        finally:
            admin.delete_topics([topic])
        print(f"run {run + 1}: {rates[-1]:,.0f} events/s", flush=True)

    median = statistics.median(rates)
    print(
        f"producer: median {median:,.0f} events/s, spread {min(rates):,.0f}-{max(rates):,.0f}, "
        f"{args.events:,} events, {args.partitions} partitions, {args.runs} runs "
        "(validate+encode+produce+flush, acks=all, idempotent, lz4)"
    )
    if not args.no_save:
        merge_results({
            "producer_events_per_s": round(median),
            "producer_split_us_per_event": {k: round(v, 2) for k, v in stages.items()},
        })
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
