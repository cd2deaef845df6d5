"""The sinks under failure: Postgres, then ClickHouse, away for 20 s each while 10,000 events
flow, then each sink killed -9 mid-stream. At the end ClickHouse holds exactly one row per
accepted event (even without FINAL, so the rollups count each once), the Postgres ledger exactly
one entry per debit, and `reconcile` is clean.

Everything here is the test's own: an IsolatedPipeline (topics, worker), a ClickHouse engine
process (`openmonetize run clickhouse`, own port and data dir) that is really stopped and started
again, the ledger table in a Postgres schema of its own reached through a TCP relay that is cut
(stopping the stack's Postgres would break the API the tests around this one use), and the two
sink processes.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from openmonetize import clickhouse_client, migrations
from openmonetize.reconcile import reconcile
from openmonetize.settings import Settings
from producers.loadgen import EventGenerator
from tests.conftest import eventually, unique
from tests.integration.isolated import IsolatedPipeline, free_port, rated_record
from tests.integration.support import Proxy
from tests.integration.test_ledger_sink import MIGRATION as LEDGER_MIGRATION
from tests.integration.test_pipeline_faults import CUSTOMERS, Ledgerbook, chunks, funded

OUTAGE_S = 8  # each store away this long: the sinks back off and retry; longer only costs suite time


class Sinks:
    """The test's ClickHouse engine, its two sinks, and how to count what they stored."""

    def __init__(self, pipeline: IsolatedPipeline, settings: Settings):
        self.pipeline = pipeline
        self.schema = unique("sinkf")
        self.clickhouse_url = f"http://127.0.0.1:{free_port()}"
        self.proxy = Proxy(settings.postgres_port)
        self.proxy.up()
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
            conn.execute(f"SET search_path TO {self.schema}")
            conn.execute(LEDGER_MIGRATION.read_text())
        self.database_url = settings.database_url
        user, password = settings.postgres_user, settings.postgres_password
        search_path = f"?options=-csearch_path%3D{self.schema},public"
        self.env = {
            "CLICKHOUSE_URL": self.clickhouse_url, "CLICKHOUSE_SINK_GROUP": unique("ch-sink"),
            "CLICKHOUSE_SINK_METRICS_PORT": "0", "CLICKHOUSE_SINK_BATCH_MS": "200", "CLICKHOUSE_SINK_MAX_BACKOFF_S": "1",
            "LEDGER_SINK_GROUP": unique("ledger-sink"), "LEDGER_SINK_METRICS_PORT": "0", "LEDGER_SINK_MAX_BACKOFF_S": "1",
        }
        self.ledger_env = {"DATABASE_URL": f"postgresql://{user}:{password}@127.0.0.1:{self.proxy.port}/"
                                           f"{settings.postgres_db}{search_path}"}
        self.reconcile_settings = pipeline.settings.model_copy(update={
            "database_url": settings.database_url + search_path, "clickhouse_url": self.clickhouse_url,
            "stack_dir": Path(pipeline.env["STACK_DIR"])})  # where the test's ClickHouse keeps its passwords
        self.client = None

    def start_clickhouse(self) -> None:
        port = self.clickhouse_url.rsplit(":", 1)[1]
        self.pipeline.start_service("clickhouse", "clickhouse", {"CLICKHOUSE_PORT": port, "LOG_LEVEL": "WARNING"})
        eventually(self._answers, timeout_s=60, interval_s=0.2, what="the test's ClickHouse to answer")
        self.client = clickhouse_client.get_client(self.reconcile_settings, "writer")

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.clickhouse_url}/ping", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_clickhouse(self) -> None:
        self.client.close()
        self.pipeline.stop_worker("clickhouse")

    def start_sink(self, kind: str, batch_rows: int = 500, env: dict[str, str] | None = None) -> None:
        env = {**self.env, **(self.ledger_env if kind == "ledger" else {}),
               "CLICKHOUSE_SINK_BATCH_ROWS": str(batch_rows), "LEDGER_SINK_BATCH_ROWS": str(batch_rows), **(env or {})}
        self.pipeline.start_service(f"sink-{kind}", f"sink-{kind}", env)

    def clickhouse_rows(self) -> int:
        return self.client.command("SELECT count() FROM openmonetize.usage_events")

    def ledger_debits(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(f"SELECT count(*) FROM {self.schema}.ledger_entries "
                                "WHERE kind = 'usage_debit'").fetchone()[0]

    def close(self) -> None:
        self.proxy.down()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


@pytest.fixture
def pipeline(settings, tmp_path):
    p = IsolatedPipeline(settings, tmp_path)
    yield p
    p.stop()


@pytest.fixture
def sinks(pipeline, settings):
    s = Sinks(pipeline, settings)
    s.start_clickhouse()
    migrations.apply_clickhouse(s.client, "openmonetize")
    yield s
    s.close()


def steady(book: Ledgerbook, generator: EventGenerator, count: int, per_second: int) -> threading.Thread:
    """Send `count` events at about `per_second`, in the background."""
    def send() -> None:
        for events in chunks(generator, count // (per_second // 4), per_second // 4):
            book.send(events)
            time.sleep(0.25)  # the pace of the load, not a synchronisation

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def unchanged_for(count, seconds: float) -> None:
    """`count()` does not move during `seconds` (the store is away: nothing can be written)."""
    before = count()
    time.sleep(seconds)  # the outage itself
    assert count() == before


def test_postgres_then_clickhouse_away_in_turn_then_each_sink_killed_mid_stream(pipeline, sinks):
    book = Ledgerbook(pipeline)
    pipeline.start_worker()
    sinks.start_sink("clickhouse")
    sinks.start_sink("ledger")
    funded(pipeline, book)
    generator = EventGenerator(seed=21, tenants=CUSTOMERS, users=40, duplicate_share=0.05)
    load = steady(book, generator, 6_000, per_second=200)  # about 30 s: both outages fall inside it
    eventually(lambda: sinks.ledger_debits() > 0 and sinks.clickhouse_rows() > 0, timeout_s=60,
               what="both sinks to store rows")

    sinks.proxy.down()
    unchanged_for(sinks.ledger_debits, OUTAGE_S)
    sinks.proxy.up()
    stored = sinks.ledger_debits()
    eventually(lambda: sinks.ledger_debits() > stored, timeout_s=60, what="the ledger sink to write again")

    sinks.stop_clickhouse()
    time.sleep(OUTAGE_S)  # the outage itself: ClickHouse is not running
    sinks.start_clickhouse()
    load.join(timeout=120)
    assert not load.is_alive()
    book.check()  # every event charged once: the balances and ledger.entries are exact
    accepted = len(book.events)
    assert 5_400 < accepted < 6_000  # the generator's retries were in the stream

    def caught_up() -> bool:
        return sinks.clickhouse_rows() == accepted and sinks.ledger_debits() == accepted

    eventually(caught_up, timeout_s=90, interval_s=0.5, what="both sinks to hold every accepted event")
    pipeline.log.flush()
    log = Path(pipeline.log.name).read_bytes()
    assert b"ledger_sink_write_failed" in log and b"clickhouse_sink_write_failed" in log  # both saw their outage

    # Each sink killed -9 while it drains a backlog of 3,000 events, then started again.
    for kind in ("clickhouse", "ledger"):
        pipeline.kill_worker(f"sink-{kind}")
    for events in chunks(generator, 6, 500):
        book.send(events)
    book.check()
    total = len(book.events)
    for kind, count in (("clickhouse", sinks.clickhouse_rows), ("ledger", sinks.ledger_debits)):
        before = count()
        sinks.start_sink(kind, batch_rows=100)
        eventually(lambda count=count, before=before: count() > before, timeout_s=60, interval_s=0.01,
                   what=f"the {kind} sink to store part of the backlog")
        pipeline.kill_worker(f"sink-{kind}")
        assert count() < total  # killed mid-stream
        sinks.start_sink(kind)
    eventually(lambda: sinks.clickhouse_rows() == total and sinks.ledger_debits() == total, timeout_s=90,
               interval_s=0.5, what="both sinks to hold every accepted event after the kills")

    [(rows, distinct, credits)] = sinks.client.query(
        "SELECT count(), uniqExact(customer_id, event_id), sum(credits) FROM openmonetize.usage_events").result_rows
    [(final_rows,)] = sinks.client.query("SELECT count() FROM openmonetize.usage_events FINAL").result_rows
    [(rolled_events, rolled_credits)] = sinks.client.query(
        "SELECT sum(events), sum(credits) FROM openmonetize.usage_daily").result_rows
    assert rows == distinct == final_rows == rolled_events == total
    assert credits == rolled_credits > Decimal(0)
    with psycopg.connect(sinks.database_url) as conn:
        debited, entries, distinct_entries = conn.execute(
            f"SELECT -sum(amount), count(*), count(DISTINCT entry_id) FROM {sinks.schema}.ledger_entries "
            "WHERE kind = 'usage_debit'").fetchone()
    assert (debited, entries, distinct_entries) == (credits, total, total)
    report = reconcile(sinks.reconcile_settings)
    assert report.mismatches == [] and report.clickhouse_events == total and report.postgres_entries > total


def test_a_clickhouse_sink_that_lost_its_commits_reads_everything_again_and_stores_each_event_once(pipeline, sinks):
    """The sink's commits are lost (its group session timed out in a broker outage and its
    commits failed, as in a soak): it reads every partition again from the start, far more
    records than the events it remembers (CLICKHOUSE_SINK_RECENT_IDS), on partitions of very
    different lengths. Then the worker re-emits some events at new offsets. `usage_events` and
    its rollups (which count every INSERT) still hold each event once."""
    topic = pipeline.topics.usage_rated.name
    sizes = {0: 4_000, 1: 300, 2: 2_000}
    records: dict[int, list[bytes]] = {}
    for partition, size in sizes.items():
        records[partition] = [pipeline.codecs.rated.encode(rated_record(
            f"w:cus_r:user:p{partition}", "cus_r", f"p{partition}-e{i}", Decimal("0.5"))) for i in range(size)]
        for value in records[partition]:
            pipeline.producer.produce(topic, key=b"cus_r:u1", value=value, partition=partition)
    pipeline.flush()
    total = sum(sizes.values())
    small_memory = {"CLICKHOUSE_SINK_RECENT_IDS": "1000"}
    sinks.start_sink("clickhouse", env=small_memory)
    eventually(lambda: sinks.clickhouse_rows() == total, timeout_s=90, interval_s=0.5, what="every record stored")
    pipeline.stop_worker("sink-clickhouse")

    group = sinks.env["CLICKHOUSE_SINK_GROUP"]
    rewinder = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": group, "enable.auto.commit": False})
    rewinder.commit(offsets=[TopicPartition(topic, p, 0) for p in sizes], asynchronous=False)
    rewinder.close()
    for partition in sizes:  # the worker's re-emitted copies: new offsets, same events
        for value in records[partition][-20:]:
            pipeline.producer.produce(topic, key=b"cus_r:u1", value=value, partition=partition)
    pipeline.flush()
    sinks.start_sink("clickhouse", env=small_memory)

    def committed_to_the_end() -> bool:
        reader = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": group})
        try:
            offsets = reader.committed([TopicPartition(topic, p) for p in sizes], timeout=10)
        finally:
            reader.close()
        return all(tp.offset == sizes[tp.partition] + 20 for tp in offsets)

    eventually(committed_to_the_end, timeout_s=90, interval_s=0.5, what="the sink to read everything again")
    [(rows, distinct)] = sinks.client.query(
        "SELECT count(), uniqExact(event_id) FROM openmonetize.usage_events").result_rows
    [(rolled,)] = sinks.client.query("SELECT sum(events) FROM openmonetize.usage_daily").result_rows
    assert rows == distinct == rolled == total
