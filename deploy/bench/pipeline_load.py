"""The load of `deploy.bench.pipeline`, run as a SEPARATE process so that generating and
encoding events never shares a Python interpreter (and its GIL) with the measurement.

Realistic events (`producers.loadgen.EventGenerator`) produced with `UsageProducer` (one per
tenant, acks=all, lz4) to the usage.events topic named by the settings (TOPIC_USAGE_EVENTS in
the environment: the benchmark run's own topic). Two modes:

- backlog: `--events N` as fast as possible, then flush: every event is on the topic when the
  process exits;
- steady: `--rate R --duration D`, through `producers.loadgen.run` (a token bucket), the
  events made before the clock starts (`Pregenerated`).

Progress goes to stderr; the last line on stdout is a JSON summary: sent, duplicates (client
retries the generator re-sent: same event_id and body, not charged again), distinct (= events
the ledger must charge), the average encoded value size in bytes, elapsed seconds.

    TOPIC_USAGE_EVENTS=bench-x.usage.events python -m deploy.bench.pipeline_load \
        --customers cus_a,cus_b --events 100000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from openmonetize.settings import get_settings
from producers import loadgen

CHUNK = 10_000
PREGENERATE_MAX = 2_000_000  # steady-load events made ahead of the clock, at most (~1.2 KB each in memory)
SIZE_SAMPLE = 5_000


def average_size(sink: loadgen.KafkaSink, generator_args: dict) -> float:
    """Mean Confluent-framed Avro value size, from a sample drawn with the same generator
    settings (its own seed: the produced stream is not disturbed)."""
    sample = loadgen.EventGenerator(**{**generator_args, "seed": generator_args["seed"] + 7919}).batch(SIZE_SAMPLE)
    now = datetime.now(timezone.utc)
    sizes = []
    for event in sample:
        producer = sink.producers[event["customer_id"]]
        sizes.append(len(producer.encode(producer.validate(event, now))))
    return sum(sizes) / len(sizes)


class Pregenerated:
    """The steady load's events, made before its clock starts, handed out as EventGenerator
    hands them (`batch`, and the duplicates and late events among those handed out so far).

    Making an event is the bench's work, not the pipeline's: at 10,000 events/s it took ~0.1
    of the two cores the run measures. Sending them (UsageProducer: validate, encode,
    produce) still happens at the rate, as a client's would."""

    def __init__(self, generator: loadgen.EventGenerator, count: int):
        self.events: list[dict] = []
        self._counts: list[tuple[int, int]] = [(0, 0)]  # (duplicates, late) among the first i events
        for _ in range(count):
            self.events.append(generator.next())
            self._counts.append((generator.duplicates, generator.late))
        self.handed = 0

    def batch(self, n: int) -> list[dict]:
        out = self.events[self.handed:self.handed + n]
        self.handed += len(out)
        return out

    @property
    def duplicates(self) -> int:
        return self._counts[self.handed][0]

    @property
    def late(self) -> int:
        return self._counts[self.handed][1]


def progress_line(label: str, sent: int, elapsed: float) -> None:
    sys.stderr.write(f"  producer ({label}): {sent:,} events, {sent / max(elapsed, 1e-9):,.0f} events/s\n")
    sys.stderr.flush()


def backlog(generator: loadgen.EventGenerator, sink: loadgen.KafkaSink, events: int) -> float:
    start = time.monotonic()
    next_progress = start + 5.0
    sent = 0
    while sent < events:
        n = min(CHUNK, events - sent)
        sink.send(generator.batch(n))
        sent += n
        if time.monotonic() >= next_progress:
            progress_line("backlog", sent, time.monotonic() - start)
            next_progress = time.monotonic() + 5.0
    sink.close(120)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", required=True, help="comma-separated tenant ids")
    parser.add_argument("--events", type=int, help="backlog mode: this many events, as fast as possible")
    parser.add_argument("--rate", type=float, help="steady mode: events per second ...")
    parser.add_argument("--duration", type=float, help="... for this many seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=1000, help="users per tenant")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of client retries")
    parser.add_argument("--late", type=float, default=0.01, help="share of events hours to days old")
    args = parser.parse_args(argv)
    if (args.events is None) == (args.rate is None):
        parser.error("give --events (backlog) or --rate and --duration (steady)")

    settings = get_settings()
    customers = args.customers.split(",")
    generator_args = dict(seed=args.seed, tenants=customers, users=args.users,
                          duplicate_share=args.duplicates, late_share=args.late)
    generator = loadgen.EventGenerator(**generator_args)
    sink = loadgen.KafkaSink(customers, settings=settings)
    size = average_size(sink, generator_args)

    made: loadgen.Events = generator
    if args.events is not None:
        elapsed = backlog(generator, sink, args.events)
        sent = args.events
    else:
        if not args.duration:
            parser.error("--rate needs --duration")
        total = int(args.rate * args.duration)
        if total <= PREGENERATE_MAX:
            made = Pregenerated(generator, total)
        else:
            sys.stderr.write(f"  producer: {total:,} events are more than {PREGENERATE_MAX:,} to hold in memory; "
                             "made while the clock runs\n")
        summary = loadgen.run(made, sink, args.rate, args.duration, close_timeout_s=120,
                              progress=lambda s: progress_line("steady", s.sent, s.elapsed_s),
                              progress_every_s=5.0)
        elapsed, sent = summary.elapsed_s, summary.sent
    counts = sink.counts()
    if counts["failed"] or counts["rejected"] or counts["in_flight"]:
        sys.stderr.write(f"  producer: not every event was delivered: {counts}; {sink.first_rejections}\n")
    print(json.dumps({
        "sent": sent,
        "duplicates": made.duplicates,
        "late": made.late,
        "distinct": sent - made.duplicates - counts["rejected"],
        "avg_value_bytes": round(size, 1),
        "elapsed_s": round(elapsed, 3),
        **counts,
    }), flush=True)
    sys.exit(1 if counts["failed"] or counts["rejected"] or counts["in_flight"] else 0)


if __name__ == "__main__":
    main()
