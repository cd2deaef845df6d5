"""How fast each sink drains a backlog: `clickhouse_sink_rows_per_s`, `postgres_sink_entries_per_s`.

    python -m deploy.bench.sinks --records 200000 --runs 3

On the running stack: N rated usage records and N ledger entries (the shapes the wallet agent
emits, 100 tenants × 1,000 users) are produced once to topics of this run. Then, per run and per
sink, a sink process (`openmonetize run sink-clickhouse|sink-ledger`) starts with a fresh
consumer group and a fresh target (a ClickHouse database of its own, migrated; a Postgres schema
of its own with the ledger table) and drains the topic. The rate counts from the first stored
row to the last, so process start-up is left out; the load was produced beforehand and is not
counted either. Each figure is the median of --runs runs with min-max; peak RSS of the sink too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from deploy.bench.ingest_http import cpu_seconds
from deploy.bench.pipeline import peak_rss_mb
from deploy.bench.results import RESULTS, merge_results
from openmonetize import clickhouse_client, migrations
from openmonetize.kafka_topics import ensure_topics
from openmonetize.settings import Settings, get_settings
from schemas.registry_client import registry_session
from schemas.topics import topics
from stream_processors import codecs as worker_codecs

ROOT = Path(__file__).resolve().parents[2]
LEDGER_MIGRATION = ROOT / "openmonetize/migrations/postgres/0005_ledger_entries.sql"


def rated(i: int, now: datetime) -> dict:
    customer, user = f"cus_bench_{i % 100}", f"user_{i % 1000}"
    credits = Decimal(1 + i % 50) / 4
    return {
        "event_id": f"evt_{i}", "customer_id": customer, "user_id": user, "team_id": None,
        "event_type": "TOKEN_USAGE", "feature_id": ("chat", "search", "summarize")[i % 3], "provider": "openai",
        "model": ("gpt-4o", "gpt-4o-mini", "o3")[i % 3], "input_tokens": 1000 + i % 500, "output_tokens": 100 + i % 50,
        "cached_input_tokens": None, "image_count": None, "image_size": None, "quality": None, "unit_type": None,
        "quantity": None, "reservation_id": None, "timestamp": now - timedelta(seconds=i % 86_400), "metadata": None,
        "received_at": now, "source": "http", "wallet_id": f"w:{customer}:user:{user}", "credits": credits,
        "usd_cost": credits / 1000, "revenue_usd": credits / 100, "margin_usd": credits / 100 - credits / 1000,
        "burn_table_id": "bt_bench", "burn_table_version": 1, "price_version": "bench", "rated_at": now,
        "revision": 0, "source_partition": i % 6, "source_offset": i,
    }


def ledger_entry(i: int, now: datetime) -> dict:
    record = rated(i, now)
    return {
        "entry_id": f"le_{i}", "customer_id": record["customer_id"], "wallet_id": record["wallet_id"],
        "kind": "usage_debit", "amount": -record["credits"], "balance_after": Decimal(1000) - record["credits"],
        "event_id": record["event_id"], "command_id": None, "grant_id": None, "reason": None,
        "occurred_at": record["timestamp"], "recorded_at": now, "metadata": {"burn_table_version": "1"},
    }


def produce(settings: Settings, records: int, tag: str) -> Settings:
    """The run's topics, filled with `records` rated events and ledger entries; its settings."""
    run_settings = settings.model_copy(update={"topic_usage_rated": f"{tag}.usage.rated",
                                               "topic_ledger_entries": f"{tag}.ledger.entries"})
    spec = topics(run_settings)
    ensure_topics(AdminClient({"bootstrap.servers": settings.kafka_bootstrap}), [spec.usage_rated, spec.ledger_entries])
    with registry_session(settings) as registry:
        codecs = worker_codecs.register(registry, spec)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True,
                         "queue.buffering.max.messages": 1_000_000})
    now = datetime.now(timezone.utc)
    for i in range(records):
        record, entry = rated(i, now), ledger_entry(i, now)
        for topic, key, value in ((spec.usage_rated.name, f"{record['customer_id']}:{record['user_id']}",
                                   codecs.rated.encode(record)),
                                  (spec.ledger_entries.name, record["wallet_id"], codecs.ledger_entry.encode(entry))):
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
        if i % 20_000 == 0:
            producer.poll(0)
            print(f"  produced {i:,}/{records:,}", flush=True)
    if producer.flush(120):
        raise RuntimeError("records not delivered")
    return run_settings


class Target:
    """One run's fresh place to write to, and how to count what is there."""

    def __init__(self, kind: str, settings: Settings, tag: str):
        self.kind, self.settings, self.name = kind, settings, tag.replace("-", "_").replace(".", "_")
        if kind == "clickhouse":
            self.client = clickhouse_client.get_client(settings, "writer")
            migrations.apply_clickhouse(self.client, self.name)
            self.env = {"CLICKHOUSE_DATABASE": self.name, "CLICKHOUSE_SINK_GROUP": self.name,
                        "CLICKHOUSE_SINK_METRICS_PORT": "0"}
        else:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.name}")
                conn.execute(f"SET search_path TO {self.name}")
                conn.execute(LEDGER_MIGRATION.read_text())
            self.env = {"LEDGER_SINK_GROUP": self.name, "LEDGER_SINK_METRICS_PORT": "0",
                        "DATABASE_URL": f"{settings.database_url}?options=-csearch_path%3D{self.name},public"}

    def count(self) -> int:
        if self.kind == "clickhouse":
            return self.client.command(f"SELECT count() FROM {self.name}.usage_events")
        with psycopg.connect(self.settings.database_url) as conn:
            return conn.execute(f"SELECT count(*) FROM {self.name}.ledger_entries").fetchone()[0]

    def drop(self) -> None:
        if self.kind == "clickhouse":
            self.client.command(f"DROP DATABASE IF EXISTS {self.name}")
            self.client.close()
        else:
            with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.name} CASCADE")


def run_sink(kind: str, settings: Settings, records: int, tag: str) -> tuple[float, float | None, float]:
    """(rows/s from the first stored row to the last, peak RSS MB, the sink's CPU µs per row over
    the same span) of one sink draining the topics."""
    target = Target(kind, settings, tag)
    env = {**os.environ, "TOPIC_USAGE_RATED": settings.topic_usage_rated,
           "TOPIC_LEDGER_ENTRIES": settings.topic_ledger_entries, "LOG_LEVEL": "WARNING", **target.env}
    service = "sink-clickhouse" if kind == "clickhouse" else "sink-ledger"
    sink = subprocess.Popen([sys.executable, "-m", "openmonetize", "run", service], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 600
        first = None
        while (stored := target.count()) < records:
            if sink.poll() is not None:
                raise RuntimeError(f"{service} exited with {sink.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} stored {stored:,} of {records:,} in 10 minutes")
            if first is None and stored:
                first = (time.perf_counter(), stored, cpu_seconds(sink.pid))
            time.sleep(0.05)
        end, cpu_end = time.perf_counter(), cpu_seconds(sink.pid)
        rss = peak_rss_mb(sink.pid)
        started, already, cpu_start = first or (end, 0, cpu_end)
        rows = max(records - already, 1)
        return rows / max(end - started, 1e-9), rss, (cpu_end - cpu_start) / rows * 1e6
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        target.drop()


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-save", action="store_true", help="do not write bench-results.json")
    args = parser.parse_args()
    tag = f"bench-sinks-{uuid.uuid4().hex[:8]}"
    print(f"producing {args.records:,} rated events and {args.records:,} ledger entries to {tag}.*", flush=True)
    settings = produce(get_settings(), args.records, tag)
    figures: dict[str, list[float]] = {"clickhouse": [], "postgres": []}
    rss: dict[str, list[float]] = {"clickhouse": [], "postgres": []}
    cpu: dict[str, list[float]] = {"clickhouse": [], "postgres": []}
    for run in range(args.runs):
        for kind in ("clickhouse", "postgres"):
            rate, peak, us_per_row = run_sink(kind, settings, args.records, f"{tag}-{kind}-{run}")
            figures[kind].append(rate)
            cpu[kind].append(us_per_row)
            if peak is not None:
                rss[kind].append(peak)
            print(f"  run {run + 1}: {kind} sink {rate:,.0f} rows/s, {us_per_row:.1f} us of sink CPU per row, "
                  f"peak RSS {peak or 0:.0f} MB", flush=True)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for done in admin.delete_topics([settings.topic_usage_rated, settings.topic_ledger_entries]).values():
        done.result(30)
    print()
    print("| figure | median (min-max) | conditions |")
    print("| --- | --- | --- |")
    conditions = f"backlog of {args.records:,} records, {args.runs} run(s), 6 partitions, one sink process"
    print(f"| clickhouse_sink_rows_per_s | {summary(figures['clickhouse'])} | {conditions} |")
    print(f"| postgres_sink_entries_per_s | {summary(figures['postgres'])} | {conditions} |")
    for kind in rss:
        print(f"| {kind}_sink_cpu_us_per_row | {statistics.median(cpu[kind]):.1f} | the sink process alone |")
        if rss[kind]:
            print(f"| {kind}_sink_peak_rss_mb | {summary(rss[kind])} | |")
    if not args.no_save:
        merge_results({
            "clickhouse_sink_rows_per_s": round(statistics.median(figures["clickhouse"])),
            "clickhouse_sink_rows_per_s_spread": [round(min(figures["clickhouse"])), round(max(figures["clickhouse"]))],
            "postgres_sink_entries_per_s": round(statistics.median(figures["postgres"])),
            "postgres_sink_entries_per_s_spread": [round(min(figures["postgres"])), round(max(figures["postgres"]))],
            **{f"{kind}_sink_peak_rss_mb": round(statistics.median(v)) for kind, v in rss.items() if v},
            **{f"{kind}_sink_cpu_us_per_row": round(statistics.median(v), 1) for kind, v in cpu.items()},
        })
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
