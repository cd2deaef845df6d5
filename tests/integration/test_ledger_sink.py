"""The Postgres ledger sink (sinks/ledger_postgres.py) on the test stack: ledger.entries land in
the append-only `ledger_entries` table exactly once, and `reconcile` compares them with the
stream's balances.

Tests 1-3 use the stack's own sink (supervised, consumer group LEDGER_SINK_GROUP). The outage
test runs a second sink process of its own, see its docstring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic

from openmonetize import wallet_ids
from openmonetize.cli import main
from tests.conftest import eventually, unique
from tests.integration.support import Proxy, read_topic, token_event
from tests.integration.test_pipeline import Stack

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = ROOT / "openmonetize/migrations/postgres/0005_ledger_entries.sql"


@pytest.fixture
def stack(settings):
    s = Stack(settings)
    yield s
    s.close()


def ledger_rows(settings, customer_id: str, schema: str = "public") -> list[tuple]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(
            f"SELECT entry_id, wallet_id, kind, amount FROM {schema}.ledger_entries WHERE customer_id = %s",
            (customer_id,)).fetchall()


def buy(stack, tenant, amount: str, user_id: str = "user-1") -> None:
    bought = stack.api(tenant, "POST", "/v1/credits/purchase", params={"wait": "true"},
                       json={"customer_id": tenant.customer_id, "user_id": user_id, "amount": amount})
    assert bought.status_code == 200 and bought.json()["status"] == "applied", bought.text


def test_200_events_are_200_debit_rows_summing_to_the_balance_and_reconcile_is_clean(stack, tenant, settings):
    stack.burn_table(tenant)
    buy(stack, tenant, "1000")
    events = [token_event(input_tokens=1000, output_tokens=100) for _ in range(200)]
    stack.ingest(tenant, events[:100])
    stack.ingest(tenant, events[100:])
    stack.ingest(tenant, events[:10])  # a retried batch changes nothing
    wallet = wallet_ids.user_wallet(tenant.customer_id, "user-1")
    eventually(lambda: stack.balance(wallet) == Decimal("300"), timeout_s=60, what="1000 - 200 x 3.5")

    def all_rows():
        rows = ledger_rows(settings, tenant.customer_id)
        assert len(rows) == 201, len(rows)
        return rows

    rows = eventually(all_rows, timeout_s=30, interval_s=0.2, what="201 ledger rows in Postgres")
    kinds = sorted(kind for _, _, kind, _ in rows)
    assert kinds == ["purchase"] + ["usage_debit"] * 200
    assert {w for _, w, _, _ in rows} == {wallet}
    assert sum(amount for *_, amount in rows) == Decimal("300")
    assert {amount for _, _, kind, amount in rows if kind == "usage_debit"} == {Decimal("-3.5")}

    def reconciled():  # the ClickHouse sink writes a batch behind the topic
        result = CliRunner().invoke(main, ["reconcile", "--customer", tenant.customer_id, "--json"])
        assert result.exit_code == 0, result.output
        return result

    report = orjson.loads(eventually(reconciled, timeout_s=30, interval_s=0.5, what="reconcile to be clean").output)
    assert report == {"wallets": 1, "entries": 201, "mismatches": [], "sources": ["topics", "postgres", "clickhouse"],
                      "postgres_entries": 201, "clickhouse_events": 200}
    only_pg = CliRunner().invoke(main, ["reconcile", "--customer", tenant.customer_id, "--source", "postgres"])
    assert only_pg.exit_code == 0 and "201 Postgres ledger rows" in only_pg.output, only_pg.output


def test_a_re_delivered_entry_is_stored_once(stack, tenant, settings):
    wallet = wallet_ids.user_wallet(tenant.customer_id, "user-1")
    buy(stack, tenant, "10")
    eventually(lambda: len(ledger_rows(settings, tenant.customer_id)) == 1, what="the purchase row")
    original = next(m for m in read_topic(settings.kafka_bootstrap, stack.topics.ledger_entries.name)
                    if m.key() and stack.codecs.ledger_entry.decode(m.value())["wallet_id"] == wallet)
    stack.producer.produce(original.topic(), key=original.key(), value=original.value(), partition=original.partition())
    assert stack.producer.flush(30) == 0
    buy(stack, tenant, "5")  # its entry comes after the copy on the same partition (keyed by wallet)
    rows = eventually(lambda: (rows := ledger_rows(settings, tenant.customer_id)) and len(rows) >= 2 and rows,
                      what="the second purchase row")
    time.sleep(0.5)
    rows = ledger_rows(settings, tenant.customer_id)
    assert len(rows) == 2 and sum(r[3] for r in rows) == Decimal("15"), rows
    reconciled = CliRunner().invoke(main, ["reconcile", "--customer", tenant.customer_id])
    assert reconciled.exit_code == 0, reconciled.output


def test_the_ledger_refuses_update_delete_and_truncate(stack, tenant, settings):
    buy(stack, tenant, "10")
    [(entry_id, *_)] = eventually(lambda: ledger_rows(settings, tenant.customer_id), what="the purchase row")
    with psycopg.connect(settings.database_url) as conn:
        for statement, params in [
            ("UPDATE ledger_entries SET amount = amount + 1 WHERE entry_id = %s", (entry_id,)),
            ("DELETE FROM ledger_entries WHERE entry_id = %s", (entry_id,)),
            ("TRUNCATE ledger_entries", ()),
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                with conn.transaction():
                    conn.execute(statement, params)
    assert [r[3] for r in ledger_rows(settings, tenant.customer_id)] == [Decimal("10")]


def synthetic_entry(customer_id: str, n: int) -> dict:
    now = datetime.now(timezone.utc)
    return {"entry_id": f"le_{customer_id}_{n}", "customer_id": customer_id, "wallet_id": f"w:{customer_id}:customer",
            "kind": "usage_debit", "amount": Decimal("-1.5"), "balance_after": Decimal(-1.5 * (n + 1)).quantize(Decimal("0.1")),
            "event_id": f"evt_{n}", "command_id": None, "grant_id": None, "reason": None, "occurred_at": now,
            "recorded_at": now, "metadata": {"burn_table_version": "3"} if n % 2 else None}


def test_postgres_outage_while_entries_flow_loses_and_duplicates_nothing(stack, settings):
    """Postgres "down" for ~10 s mid-stream, as the sink sees it.

    Stopping the test stack's shared Postgres would break the API and the tests running next to
    this one, so this test runs a second sink process of its own: its own topic and consumer
    group, its own copy of the `ledger_entries` table (a schema of its own, first on its
    search_path), and a DATABASE_URL pointing at a TCP relay to the real Postgres. The relay is
    cut for 10 s (open connections dropped, new ones refused) while entries keep coming, then
    restored: every entry must be stored exactly once, and SIGTERM must end the sink cleanly.
    """
    schema, topic, customer = unique("ledger_t"), unique("ledger_entries_t"), unique("cus_outage")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(MIGRATION.read_text())
    proxy = Proxy(settings.postgres_port)
    proxy.up()
    user, password = settings.postgres_user, settings.postgres_password
    env = {**os.environ, "TOPIC_LEDGER_ENTRIES": topic, "LEDGER_SINK_GROUP": unique("ledger-sink-t"),
           "LEDGER_SINK_METRICS_PORT": "0", "LEDGER_SINK_BATCH_ROWS": "500", "LEDGER_SINK_MAX_BACKOFF_S": "1",
           "LOG_FORMAT": "json",
           "DATABASE_URL": f"postgresql://{user}:{password}@127.0.0.1:{proxy.port}/{settings.postgres_db}"
                           f"?options=-csearch_path%3D{schema},public"}
    log_path = settings.stack_dir / "logs" / f"{schema}.log"
    with open(log_path, "wb") as log_file:
        sink = subprocess.Popen([sys.executable, "-m", "openmonetize", "run", "sink-ledger"], cwd=ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        def produce(numbers) -> None:
            for n in numbers:
                stack.producer.produce(topic, key=f"w:{customer}:customer".encode(),
                                       value=stack.codecs.ledger_entry.encode(synthetic_entry(customer, n)))
            assert stack.producer.flush(30) == 0

        def count() -> int:
            with psycopg.connect(settings.database_url) as conn:
                return conn.execute(f"SELECT count(*) FROM {schema}.ledger_entries").fetchone()[0]

        produce(range(0, 1000))
        eventually(lambda: count() == 1000, timeout_s=60, what="the first 1000 entries")
        proxy.down()
        produce(range(1000, 2000))
        time.sleep(3)
        produce(range(1000, 1500))  # re-delivered while Postgres is away
        produce(range(2000, 3000))
        time.sleep(7)
        assert count() == 1000  # nothing could be written
        proxy.up()
        eventually(lambda: count() == 3000, timeout_s=60, interval_s=0.25, what="all 3000 entries after the outage")
        time.sleep(1)
        with psycopg.connect(settings.database_url) as conn:
            total, rows, distinct, versions = conn.execute(
                f"SELECT sum(amount), count(*), count(DISTINCT entry_id), count(burn_table_version) "
                f"FROM {schema}.ledger_entries").fetchone()
        assert (total, rows, distinct, versions) == (Decimal("-4500"), 3000, 3000, 1500)
        assert b"ledger_sink_write_failed" in log_path.read_bytes()  # it did see the outage
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=30) == 0
        assert b"ledger_sink_stopped" in log_path.read_bytes()
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
        proxy.down()
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.delete_topics([topic])


def test_a_batch_is_copied_as_is_and_one_holding_entries_already_stored_adds_only_the_new_ones(settings):
    """write_batch's two paths on a real Postgres: a plain COPY for new entries; a batch that
    repeats stored entries (read again after a crash) or repeats one within itself (re-emitted)
    is rolled back and written through the staging table, adding only what is new."""
    from sinks.ledger_postgres import COLUMNS, connect, to_row, write_batch

    schema, customer = unique("ledgerw"), unique("cus")
    rows = [to_row(synthetic_entry(customer, n), 0, n) for n in range(10)]
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            with connect(settings.database_url) as conn:
                conn.execute(f"SET search_path = {schema}")
                conn.execute(MIGRATION.read_text())
                conn.commit()
                assert write_batch(conn, rows[:6]) == 6
                assert write_batch(conn, rows[4:8]) == 2  # 4 and 5 are there already
                assert write_batch(conn, [rows[8], rows[9], rows[9]]) == 2  # 9 twice in the batch
                assert write_batch(conn, rows) == 0
                stored = conn.execute("SELECT entry_id, kafka_offset, metadata, amount, balance_after, occurred_at "
                                      "FROM ledger_entries ORDER BY kafka_offset").fetchall()
            assert [row[:2] for row in stored] == [(f"le_{customer}_{n}", n) for n in range(10)]
            # The binary COPY keeps every value exact: jsonb from the JSON text, numerics, timestamps.
            for n, (_, _, metadata, amount, balance_after, occurred_at) in enumerate(stored):
                entry = synthetic_entry(customer, n)
                assert metadata == entry["metadata"]
                assert (amount, balance_after) == (entry["amount"], entry["balance_after"])
                assert occurred_at == rows[n][COLUMNS.index("occurred_at")]
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
