"""`make bench-backlog`: how long a backlog put on usage.events takes to be in the Postgres ledger
of the running stack, as a user sees it (the stack's own worker(s) and ledger sink).

Set-up (not timed): a fresh tenant with the pipeline benchmark's burn table (it rates every
event the load generator makes), and --events realistic events (producers.loadgen.EventGenerator,
no client retries, no late events) validated and encoded beforehand in the Confluent wire format.
Then a plain confluent-kafka producer puts them all on usage.events (key `customer:user`), and
the clock runs from its first record until `ledger_entries` in Postgres holds one usage_debit
per event. `backlog_to_ledger_s` is that time; `backlog_to_ledger_events_per_s` the rate. The
ledger is counted every 100 ms (a count over up to --events rows: polled every 20 ms, Postgres
and this process took ~15% of the box's CPU from the stack being measured), and the box's busy
CPU over the run is printed beside it: on 2 cores the run is bound by it. So is each part of
the stack's CPU over the run (the workers, Kafka, Postgres, each sink, ClickHouse: the stack's
own processes, by their pid files, each with its children), and the workers' µs per event
(`backlog_worker_cpu_us_per_event`). With --runs, each run has a tenant of its own and the
figures saved are the medians.

    python -m deploy.bench.backlog --events 40000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timezone

import psycopg
from confluent_kafka import Producer

from deploy.bench.ingest_http import cpu_seconds
from deploy.bench.pipeline import create_tenants
from deploy.bench.results import merge_results
from deploy.local_stack.processes import ManagedProcess
from deploy.local_stack.supervisor import workers
from openmonetize.settings import get_settings
from producers.loadgen import EventGenerator
from producers.usage_producer import UsageProducer

COUNT_SQL = "SELECT count(*) FROM ledger_entries WHERE customer_id = %s AND kind = 'usage_debit'"


def encoded_events(customer_id: str, events: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of `events` distinct events of the tenant, Confluent-framed Avro."""
    encoder = UsageProducer(customer_id)
    generator = EventGenerator(seed=11, tenants=[customer_id], users=1000)
    now = datetime.now(timezone.utc)
    out = []
    for event in generator.batch(events):
        record = encoder.validate(event, now)
        out.append((f"{customer_id}:{record['user_id']}".encode(), encoder.encode(record)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=1, help="runs, each with a tenant of its own; the medians are saved")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    opts = parser.parse_args(argv)

    settings = get_settings()
    times, worker_us = [], []
    for run in range(1, opts.runs + 1):
        elapsed, cpu = one_run(settings, opts.events, opts.timeout)
        times.append(elapsed)
        worker_us.append(cpu.get("workers", 0.0) / opts.events * 1e6)
        if opts.runs > 1:
            print(f"  run {run}: {elapsed:.2f} s", file=sys.stderr)
    if opts.runs > 1:
        print(f"backlog_to_ledger_s: median {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}) "
              f"over {opts.runs} runs; the workers {statistics.median(worker_us):.0f} µs of CPU per event")
    if not opts.no_save:
        elapsed = statistics.median(times)
        merge_results({"backlog_to_ledger_s": round(elapsed, 2), "backlog_to_ledger_events": opts.events,
                       "backlog_to_ledger_events_per_s": round(opts.events / elapsed),
                       "backlog_worker_cpu_us_per_event": round(statistics.median(worker_us), 1)})


def one_run(settings, events: int, timeout_s: float) -> tuple[float, Counter]:
    """One backlog into a fresh tenant's ledger: (seconds, CPU-seconds of each part of the stack)."""
    [customer_id] = create_tenants(settings, 1)
    records = encoded_events(customer_id, events)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5, "acks": "all",
                         "compression.type": "lz4", "partitioner": "murmur2_random"})
    topic = settings.topic_usage_events
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        pids, ours = _stack_pids(settings), conn.info.backend_pid  # this process's counting is not the stack's
        started, busy_at_start, cpu_at_start = time.monotonic(), _busy_cpu_s(), _stack_cpu_s(pids, ours)
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
        if producer.flush(60) != 0:
            raise SystemExit("the backlog was not acknowledged by Kafka within 60 s")
        produced_s = time.monotonic() - started
        stored, next_report = 0, started + 2
        while stored < len(records):
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"only {stored:,} of {len(records):,} events in the ledger after {timeout_s:.0f} s")
            stored = conn.execute(COUNT_SQL, (customer_id,)).fetchone()[0]
            if time.monotonic() >= next_report:
                print(f"  {stored:,} / {len(records):,} in the ledger after {time.monotonic() - started:.1f}s",
                      file=sys.stderr)
                next_report += 2
            time.sleep(0.1)  # polling interval of the measurement, not a synchronisation
        elapsed = time.monotonic() - started
        busy_s = _busy_cpu_s() - busy_at_start
        cpu = _stack_cpu_s(pids, ours)
        cpu.subtract(cpu_at_start)
    rate = len(records) / elapsed
    parts = ", ".join(f"{part} {seconds:.2f}" for part, seconds in cpu.items())
    print(f"backlog_to_ledger_s: {elapsed:.2f} s for {len(records):,} events ({rate:,.0f} events/s; "
          f"produced in {produced_s:.2f} s) into the stack's ledger, tenant {customer_id}; the box's CPU busy "
          f"{busy_s:.1f} s of {os.cpu_count()} cores x {elapsed:.1f} s; CPU-s: {parts} (the workers "
          f"{cpu['workers'] / len(records) * 1e6:.0f} µs per event)")
    return elapsed, cpu


def _stack_pids(settings) -> dict[str, list[int]]:
    """The stack's running processes (its pid files), by part."""
    names = {"workers": list(workers(settings)), "Kafka": ["kafka"], "Postgres": ["postgres"],
             "ledger sink": ["sink-ledger"], "ClickHouse sink": ["sink-clickhouse"], "ClickHouse": ["clickhouse"]}
    run, logs = settings.stack_dir / "run", settings.stack_dir / "logs"
    return {part: [pid for name in group if (pid := ManagedProcess(name, run, logs).pid()) is not None]
            for part, group in names.items()}


def _stack_cpu_s(pids: dict[str, list[int]], ours: int) -> Counter:
    """CPU seconds each part of the stack has used so far (each process with its children: the
    Postgres backends), less `ours`, this process's own Postgres connection."""
    used = Counter({part: sum(cpu_seconds(pid) for pid in group) for part, group in pids.items() if group})
    used["Postgres"] -= cpu_seconds(ours)
    return used


def _busy_cpu_s() -> float:
    """CPU seconds every process of the box has used since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
