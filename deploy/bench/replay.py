"""`make bench-replay`: a rebilling replay's dry run over --events usage events, on the running stack.

Set-up, once (not measured):
- a fresh tenant with the pipeline benchmark's burn table (it rates every event the load
  generator makes) and a version 2 with every rate doubled, in force from before every event;
- a usage.events topic of the run's own (`bench-replay-<id>.usage.events`, KAFKA_PARTITIONS
  partitions) holding --events realistic events (producers.loadgen.EventGenerator: mixed models
  and event types, 5% client retries, 1% late events up to 35 days old), all of the tenant;
- a Postgres schema of the run's own with `ledger_entries` and the replay tables, seeded with
  one usage_debit per distinct event (as the pipeline would have charged them), so the replay
  reads a real ledger of that size and the stack's own ledger never sees these rows (the run's
  ledger.entries topic is an empty one of its own: nothing for the ledger sink to catch up on).

Each run is `openmonetize replay --dry-run` over a window holding every event (the library
call the CLI makes, so the same forked readers): ledger read, then every partition read,
decoded, deduplicated, re-rated and compared. `replay_events_per_s` = records in the window /
the run's wall time from start to summary; the median of --runs runs, with min-max. Also the
events per CPU-second (this process and its forked readers), which the other load on a shared
box does not move, and per-phase seconds from the run's progress callbacks. Everything is
dropped at the end.

    python -m deploy.bench.replay --events 1000000 --runs 3
    python -m deploy.bench.replay --quick            # 100,000 events
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from deploy.bench.pipeline import RULES
from deploy.bench.results import RESULTS, merge_results
from openmonetize.kafka_topics import ensure_topics
from openmonetize.rebilling.codecs import replay_codecs
from openmonetize.rebilling.replay import Progress, ReplayRequest, execute
from openmonetize.settings import get_settings
from openmonetize.stores.tenants import create_customer
from producers.loadgen import EventGenerator
from schemas.topics import topics
from schemas.usage_event import EventLimits, convert_event, to_record

TABLES = ("ledger_entries", "replay_runs", "replay_adjustments")


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the forked readers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Phases(Progress):
    """Seconds spent in each phase the run reports."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current, self._since = None, time.monotonic()

    def phase(self, text: str) -> None:
        self._close()
        self._current = text.split(" ")[0] if text.startswith("booking") else text

    def _close(self) -> None:
        now = time.monotonic()
        if self._current is not None:
            self.seconds[self._current] = self.seconds.get(self._current, 0.0) + now - self._since
        self._since = now

    def done(self) -> dict[str, float]:
        self._close()
        self._current = None
        return self.seconds


def produce(settings, topic: str, customer_id: str, events: int, seed: int) -> list[tuple[str, str, datetime]]:
    """--events records on `topic`; (event id, user id, timestamp) of each distinct event."""
    codecs = replay_codecs(settings, topics(settings))
    generator = EventGenerator(seed, [customer_id], users=200, duplicate_share=0.05, late_share=0.01)
    limits = EventLimits.from_settings(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 50, "batch.size": 1_000_000, "compression.type": "zstd",
                         "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000})
    distinct: dict[str, tuple[str, str, datetime]] = {}
    started = time.monotonic()
    for n in range(events):
        received = datetime.now(timezone.utc)
        record = to_record(convert_event(generator.next()), customer_id=customer_id, source="kafka",
                           received_at=received, limits=limits)
        distinct.setdefault(record["event_id"], (record["event_id"], record["user_id"], record["timestamp"]))
        value = codecs.usage_event.encode(record)
        while True:
            try:
                producer.produce(topic, value, f"{customer_id}:{record['user_id']}".encode())
                break
            except BufferError:
                producer.poll(0.05)
        if n % 100_000 == 99_999:
            print(f"  produced {n + 1:,} events ({(n + 1) / (time.monotonic() - started):,.0f}/s)", file=sys.stderr)
    if producer.flush(120):
        raise SystemExit("usage events not acknowledged in 120 s")
    return list(distinct.values())


def seed_ledger(conn: psycopg.Connection, schema: str, customer_id: str, events: list[tuple[str, str, datetime]]) -> None:
    """One usage_debit of 1 credit per distinct event, on its user's wallet."""
    now = datetime.now(timezone.utc)
    with conn.cursor() as cur, cur.copy(
            f"COPY {schema}.ledger_entries (entry_id, customer_id, wallet_id, kind, amount, balance_after, event_id, "
            "occurred_at, applied_at, kafka_partition, kafka_offset) FROM STDIN") as copy:
        for n, (event_id, user_id, at) in enumerate(events):
            copy.write_row((f"le_bench_{n}", customer_id, f"w:{customer_id}:user:{user_id}", "usage_debit", -1, 0,
                            event_id, at, now, 0, n))
    conn.execute(f"ANALYZE {schema}.ledger_entries")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 events, 3 runs")
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    opts = parser.parse_args(argv)
    events = 100_000 if opts.quick else opts.events
    settings = get_settings()
    tag = uuid.uuid4().hex[:8]
    topic, schema = f"bench-replay-{tag}.usage.events", f"bench_replay_{tag}"
    run_settings = settings.model_copy(update={
        "topic_usage_events": topic,
        "topic_ledger_entries": f"bench-replay-{tag}.ledger.entries",  # empty: the ledger is the schema's
        "database_url": settings.database_url + ("&" if "?" in settings.database_url else "?")
        + f"options=-csearch_path%3D{schema},public"})
    run_topics = topics(run_settings)
    # A client of its own, gone before the runs: a replay forks its readers only from a process
    # down to one thread (rebilling/source.py), and an admin client's threads would keep it inline.
    ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}),
                  [run_topics.usage_events, run_topics.ledger_entries])
    customer_id = bench_tenant(settings, tag)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        for table in TABLES:
            conn.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
    try:
        print(f"tenant {customer_id}: producing {events:,} events to {topic}", file=sys.stderr)
        distinct = produce(settings, topic, customer_id, events, seed=7)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            started = time.monotonic()
            seed_ledger(conn, schema, customer_id, distinct)
            print(f"  ledger: {len(distinct):,} usage debits in {time.monotonic() - started:.1f}s", file=sys.stderr)
        now = datetime.now(timezone.utc)
        request = ReplayRequest(customer_id, now - timedelta(days=36), now + timedelta(hours=1), force=True)
        rates, per_cpu, phases_of = [], [], []
        for i in range(opts.runs):
            phases = Phases()
            cpu_before, started = cpu_seconds(), time.monotonic()
            run = execute(run_settings, request, requested_by="bench", progress=phases)
            elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu_before
            read = run.events + run.duplicates + run.conflicts
            rates.append(read / elapsed)
            per_cpu.append(read / cpu)
            phases_of.append(phases.done())
            print(f"  run {i + 1}: {read:,} events ({run.events:,} distinct, {run.adjusted:,} re-rated differently) "
                  f"in {elapsed:.2f}s = {read / elapsed:,.0f} events/s, {cpu:.1f} CPU-s ({read / cpu:,.0f} per CPU-s), "
                  f"load {os.getloadavg()[0]:.1f}; "
                  + ", ".join(f"{k} {v:.2f}s" for k, v in phases.seconds.items()), file=sys.stderr)
            assert run.events == len(distinct) and run.uncharged == 0, (run.events, len(distinct), run.uncharged)
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        for deleted in admin.delete_topics([run_topics.usage_events.name, run_topics.ledger_entries.name]).values():
            deleted.result(30)
    median = statistics.median(rates)
    figures = {
        "replay_events_per_s": round(median),
        "replay_events_per_s_min": round(min(rates)),
        "replay_events_per_s_max": round(max(rates)),
        "replay_events_per_cpu_s": round(statistics.median(per_cpu)),
        "replay_events": events,
        "replay_runs": opts.runs,
        "replay_phase_seconds": {k: round(statistics.median(p.get(k, 0.0) for p in phases_of), 2)
                                 for k in phases_of[0]},
    }
    if not opts.no_save:
        merge_results(figures)
    print(f"replay_events_per_s: {median:,.0f} (min {min(rates):,.0f}, max {max(rates):,.0f}) over {events:,} events, "
          f"{opts.runs} runs, {figures['replay_events_per_cpu_s']:,} per CPU-second"
          + ("" if opts.no_save else f"; merged into {RESULTS.name}"))



def doubled(rules):
    """The rules with every rate doubled (per_unit kept)."""
    if isinstance(rules, dict):
        return {k: v if k == "per_unit" else doubled(v) for k, v in rules.items()}
    return str(Decimal(str(rules)) * 2)


def bench_tenant(settings, tag: str) -> str:
    """A fresh tenant with the pipeline benchmark's burn table (version 1) and a version 2 with
    every rate doubled, both in force since 40 days ago: version 2 rates every event."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        tenant = create_customer(conn, f"bench-replay-{tag}")
    since = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()
    headers = {"X-OM-Api-Key": tenant.api_key}
    created = httpx.post(f"{settings.api_url}/v1/burn-tables", headers=headers, timeout=30,
                         json={"name": "bench", "rules": RULES, "effective_from": since})
    if created.status_code != 201:
        raise SystemExit(f"POST /v1/burn-tables answered {created.status_code}: {created.text}")
    table_id = created.json()["burn_table_id"]
    version = httpx.post(f"{settings.api_url}/v1/burn-tables/{table_id}/versions", headers=headers, timeout=30,
                         json={"rules": doubled(RULES), "effective_from": since})
    if version.status_code != 201:
        raise SystemExit(f"POST /v1/burn-tables/{table_id}/versions answered {version.status_code}: {version.text}")
    return tenant.customer_id

if __name__ == "__main__":
    main()
