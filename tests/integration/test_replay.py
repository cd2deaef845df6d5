"""Rebilling replays on the test stack: real broker, real ledger, the stack's worker and sinks.

Each test has tenants of its own; events go through HTTP ingest (or straight to usage.events)
and are charged by the pipeline before a retroactive burn-table version is replayed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from openmonetize import wallet_ids
from openmonetize.rebilling import booking
from openmonetize.rebilling.replay import ReplayRequest, execute
from openmonetize.stores import replay_runs as runs
from tests.conftest import eventually
from tests.integration.support import clickhouse_query, new_tenant, token_event
from tests.integration.test_pipeline import Stack, raw_event

ROOT = Path(__file__).parents[2]
V1 = {"gpt-4o": {"input_tokens": "5", "output_tokens": "25", "per_unit": "1000"}}  # 1000 in + 100 out = 7.5
V2 = {"gpt-4o": {"input_tokens": "7.5", "output_tokens": "25", "per_unit": "1000"}}  # the same usage = 10


@pytest.fixture
def stack(settings):
    s = Stack(settings)
    yield s
    s.close()


def replay(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """`openmonetize replay ...` as an operator runs it, in its own process."""
    done = subprocess.run([sys.executable, "-m", "openmonetize", "replay", *args], capture_output=True, text=True,
                          cwd=ROOT, env=os.environ, timeout=300)
    assert done.returncode == expect, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done


def window(minutes: int = 30) -> list[str]:
    now = datetime.now(timezone.utc)
    return ["--from", (now - timedelta(minutes=minutes)).isoformat(), "--to", (now + timedelta(minutes=1)).isoformat()]


def charge(stack: Stack, tenant, events: list[dict], wallet: str, expected: Decimal) -> None:
    for i in range(0, len(events), 100):
        stack.ingest(tenant, events[i:i + 100])
    eventually(lambda: stack.balance(wallet) == expected, timeout_s=90, interval_s=0.2,
               what=f"{wallet} charged down to {expected}")


def retroactive(stack: Stack, tenant, table_id: str, rules: dict) -> None:
    """A new version in force from the same past instant as version 1: it rates every event."""
    stack.burn_table(tenant, rules, table_id)


def ledger(settings, customer_id: str, kind: str) -> list[tuple]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute("SELECT event_id, wallet_id, amount FROM ledger_entries WHERE customer_id = %s AND kind = %s",
                            (customer_id, kind)).fetchall()


def stored_run(settings, run_id: str) -> runs.Run:
    with psycopg.connect(settings.database_url) as conn:
        return runs.get(conn, run_id)


def recorded(settings, run_id: str) -> int:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute("SELECT count(*) FROM replay_adjustments WHERE run_id = %s", (run_id,)).fetchone()[0]


def reconciled(customer_id: str) -> dict:
    def clean():
        done = subprocess.run([sys.executable, "-m", "openmonetize", "reconcile", "--customer", customer_id, "--json"],
                              capture_output=True, text=True, cwd=ROOT, env=os.environ, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return orjson.loads(done.stdout)

    return eventually(clean, timeout_s=60, interval_s=1, what=f"reconcile clean for {customer_id}")


def funded_tenant(stack: Stack, events: int, amount: str = "1000"):
    tenant = new_tenant(stack.settings)
    table_id = stack.burn_table(tenant, V1)
    wallet = wallet_ids.user_wallet(tenant.customer_id, "user-1")
    stack.purchase(wallet, tenant.customer_id, amount)
    batch = [token_event(input_tokens=1000, output_tokens=100) for _ in range(events)]
    charge(stack, tenant, batch, wallet, Decimal(amount) - Decimal("7.5") * events)
    return tenant, table_id, wallet, batch


def test_100_events_at_7_5_rebilled_at_10_end_250_lower_and_again_unchanged(stack, settings):
    tenant, table_id, wallet, _ = funded_tenant(stack, 100)
    assert stack.balance(wallet) == Decimal("250")
    retroactive(stack, tenant, table_id, V2)
    customer = tenant.customer_id

    dry = replay("--customer", customer, *window(), "--dry-run")
    assert "user-1" in dry.stdout and "would book 250" in dry.stdout, dry.stdout
    assert stack.balance(wallet) == Decimal("250") and ledger(settings, customer, "adjustment") == []

    applied = orjson.loads(replay("--customer", customer, *window(), "--yes", "--json").stdout)
    assert (applied["status"], applied["events"], applied["adjusted"]) == ("completed", 100, 100)
    assert Decimal(applied["charged"]) == 750 and Decimal(applied["rerated"]) == 1000
    assert Decimal(applied["difference"]) == 250
    eventually(lambda: stack.balance(wallet) == Decimal("0"), what="the wallet 250 lower")
    adjustments = ledger(settings, customer, "adjustment")
    assert len(adjustments) == 100 and {a[2] for a in adjustments} == {Decimal("-2.5")}

    again = orjson.loads(replay("--customer", customer, *window(), "--yes", "--json").stdout)
    assert (again["adjusted"], Decimal(again["difference"]), Decimal(again["charged"])) == (0, 0, 1000)
    assert stack.balance(wallet) == Decimal("0") and len(ledger(settings, customer, "adjustment")) == 100
    listed = replay("list", "--customer", customer).stdout
    assert dry.stdout.split("run ")[1].split(" ")[0] in listed and applied["run_id"] in listed
    report = reconciled(customer)
    assert report["mismatches"] == [] and report["clickhouse_events"] == 100


def test_an_interrupted_run_resumed_books_each_difference_once(stack, settings, monkeypatch):
    tenant, table_id, wallet, _ = funded_tenant(stack, 40, "500")  # 500 - 40 x 7.5 = 200
    retroactive(stack, tenant, table_id, V2)
    now = datetime.now(timezone.utc)
    request = ReplayRequest(tenant.customer_id, now - timedelta(minutes=30), now + timedelta(minutes=1), apply=True)
    real_send = booking.send

    def crash_half_way(bootstrap, topic, encode, adjustments, timeout_s, progress=None):
        real_send(bootstrap, topic, encode, adjustments[:15], timeout_s)  # 15 sent, 25 recorded but never sent
        raise KeyboardInterrupt

    monkeypatch.setattr(booking, "send", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        execute(settings.model_copy(update={"replay_workers": 1}), request, "rr_" + tenant.customer_id)
    monkeypatch.undo()
    assert stored_run(settings, "rr_" + tenant.customer_id).status == "interrupted"

    resumed = orjson.loads(replay("--customer", tenant.customer_id, "--from", request.start.isoformat(),
                                  "--to", request.end.isoformat(), "--yes", "--run-id", "rr_" + tenant.customer_id,
                                  "--json").stdout)
    assert (resumed["status"], resumed["adjusted"], Decimal(resumed["difference"])) == ("completed", 40, 100)
    eventually(lambda: stack.balance(wallet) == Decimal("100"), what="200 - 40 x 2.5, booked once")
    adjustments = ledger(settings, tenant.customer_id, "adjustment")
    assert len(adjustments) == 40 and len({a[0] for a in adjustments}) == 40
    assert stack.balance(wallet) == Decimal("100")
    assert reconciled(tenant.customer_id)["mismatches"] == []


def test_another_tenants_events_are_untouched_and_copies_count_once(stack, settings):
    tenant, table_id, wallet, batch = funded_tenant(stack, 10, "100")  # 25 left
    other, _, other_wallet, _ = funded_tenant(stack, 10, "100")
    first = raw_event(tenant.customer_id, input_tokens=1000, output_tokens=100)
    stack.produce_raw(first)
    stack.produce_raw({**first, "received_at": datetime.now(timezone.utc)})  # a client retry: the same body
    stack.produce_raw({**first, "output_tokens": 200})  # the same id, other usage: refused by the pipeline
    eventually(lambda: stack.balance(wallet) == Decimal("17.5"), what="the raw event charged once")
    eventually(lambda: [r["reason"] for r in stack.dlq(tenant.customer_id)] == ["conflicting_duplicate"],
               what="the conflicting copy refused")
    retroactive(stack, tenant, table_id, V2)

    run = orjson.loads(replay("--customer", tenant.customer_id, *window(), "--yes", "--json").stdout)
    assert (run["events"], run["duplicates"], run["conflicts"], run["adjusted"]) == (11, 1, 1, 11)
    assert Decimal(run["difference"]) == Decimal("27.5")
    eventually(lambda: stack.balance(wallet) == Decimal("-10"), what="17.5 - 11 x 2.5")
    assert stack.balance(other_wallet) == Decimal("25") and ledger(settings, other.customer_id, "adjustment") == []
    assert reconciled(other.customer_id)["mismatches"] == []


def test_rebuild_analytics_rewrites_clickhouse_and_reconcile_stays_clean(stack, settings):
    tenant, table_id, wallet, _ = funded_tenant(stack, 10, "100")
    customer = tenant.customer_id
    eventually(lambda: clickhouse_query(settings, "SELECT count() FROM usage_events FINAL WHERE customer_id = {c:String}",
                                        c=customer) == [(10,)], what="the events in ClickHouse")
    retroactive(stack, tenant, table_id, V2)
    replay("--customer", customer, *window(), "--yes")  # without: ClickHouse keeps the charged 7.5
    assert reconciled(customer)["mismatches"] == []
    assert clickhouse_query(settings, "SELECT sum(credits) FROM usage_events FINAL WHERE customer_id = {c:String}",
                            c=customer) == [(Decimal("75"),)]

    run = orjson.loads(replay("--customer", customer, *window(), "--yes", "--rebuild-analytics", "--json").stdout)
    assert (run["adjusted"], run["rewritten_events"]) == (0, 10)  # booked by the first run; analytics now
    assert clickhouse_query(
        settings, "SELECT sum(credits), max(revision), max(burn_table_version) FROM usage_events FINAL "
                  "WHERE customer_id = {c:String}", c=customer) == [(Decimal("100"), 1, 2)]
    for rollup in ("usage_hourly", "usage_daily"):
        assert clickhouse_query(settings, f"SELECT sum(credits), sum(events) FROM {rollup} WHERE customer_id = {{c:String}}",
                                c=customer) == [(Decimal("100"), 10)], rollup
    assert stack.balance(wallet) == Decimal("0")
    assert reconciled(customer)["mismatches"] == []


def test_guard_rails_refuse_with_the_reason(stack, settings):
    tenant = new_tenant(settings)
    customer = tenant.customer_id
    now = datetime.now(timezone.utc)
    wide = replay("--customer", customer, "--from", (now - timedelta(days=40)).isoformat(), "--to", now.isoformat(),
                  "--dry-run", expect=1)
    assert "REPLAY_MAX_RANGE_DAYS" in wide.stderr and "--force" in wide.stderr
    old = replay("--customer", customer, "--from", (now - timedelta(days=500)).isoformat(), "--to", now.isoformat(),
                 "--dry-run", "--force", expect=1)
    assert "retention" in old.stderr and "400 days" in old.stderr
    both = replay("--customer", customer, *window(), expect=2)
    assert "--dry-run" in both.stderr and "--yes" in both.stderr
    with runs.tenant_lock(settings.database_url, customer, "rr_holder"):
        busy = replay("--customer", customer, *window(), "--dry-run", expect=1)
    assert f"another replay of tenant {customer} is running" in busy.stderr
    replay("--customer", customer, *window(), "--dry-run")  # the lock is free again
    assert "--burn-table-version" in replay("--customer", customer, *window(), "--dry-run", "--burn-table-version", "7",
                                            expect=1).stderr


def test_the_api_runs_a_dry_run_by_default_for_the_keys_tenant_only(stack, settings):
    tenant, table_id, wallet, _ = funded_tenant(stack, 5, "100")
    retroactive(stack, tenant, table_id, V2)
    now = datetime.now(timezone.utc)
    body = {"from": (now - timedelta(minutes=30)).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}
    created = stack.api(tenant, "POST", "/v1/rebilling/runs", json=body)
    assert created.status_code == 202, created.text
    run_id = created.json()["run_id"]
    assert created.json()["mode"] == "dry_run"

    def finished():
        answer = stack.api(tenant, "GET", f"/v1/rebilling/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["status"] in ("completed", "failed") else None

    run = eventually(finished, timeout_s=120, interval_s=0.5, what="the dry run to finish")
    assert (run["status"], run["events"], run["difference"]) == ("completed", 5, "12.5"), run
    assert run["per_user"][0]["user_id"] == "user-1"
    assert stack.balance(wallet) == Decimal("62.5")  # 100 - 5 x 7.5: a dry run changes nothing

    stranger = new_tenant(settings)
    assert httpx.get(f"{settings.api_url}/v1/rebilling/runs/{run_id}", headers={"X-OM-Api-Key": stranger.api_key},
                     timeout=10).status_code == 404
    bad = stack.api(tenant, "POST", "/v1/rebilling/runs", json={**body, "to": body["from"]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "to", bad.text


def test_a_resume_waits_for_adjustments_in_flight_and_forgets_those_never_sent(stack, settings):
    """settle() on a wallet.commands topic of its own that no worker reads: the sent commands
    stay in flight (the resume refuses to go on), the rows of those never sent are dropped."""
    from confluent_kafka.admin import AdminClient

    from openmonetize.kafka_topics import ensure_topics
    from openmonetize.rebilling.codecs import replay_codecs
    from openmonetize.rebilling.rerate import Adjustment
    from schemas.topics import topics
    from tests.conftest import unique

    private = settings.model_copy(update={"topic_wallet_commands": unique("replay") + ".wallet.commands"})
    spec = topics(private).wallet_commands
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    ensure_topics(admin, [spec])
    codecs = replay_codecs(private, topics(private))
    customer, run_id = unique("cus"), unique("rr")
    now = datetime.now(timezone.utc)
    adjustments = [Adjustment(run_id, customer, f"e{i}", wallet_ids.user_wallet(customer, "u1"), "u1", Decimal("-1"), 0)
                   for i in range(4)]
    with psycopg.connect(settings.database_url) as conn, _deleted_after(admin, spec.name):
        runs.create(conn, runs.Run(run_id, customer, [], now - timedelta(hours=1), now, None, "apply", False,
                                   "interrupted", "test"))
        runs.save_commands_from(conn, run_id, booking.end_offsets(settings.kafka_bootstrap, spec.name))
        booking.record(conn, adjustments)
        booking.send(settings.kafka_bootstrap, spec.name, codecs.wallet_command.encode, adjustments[:2], 10)
        with pytest.raises(booking.BookingError, match=f"2 adjustments \\(run {run_id}"):
            booking.settle(conn, settings.kafka_bootstrap, spec.name, customer, 1.0, codecs.wallet_command.decode)
        left = conn.execute("SELECT event_id FROM replay_adjustments WHERE run_id = %s ORDER BY event_id",
                            (run_id,)).fetchall()
    assert left == [("e0",), ("e1",)]


@contextmanager
def _deleted_after(admin, topic: str):
    try:
        yield
    finally:
        admin.delete_topics([topic])


def test_a_run_killed_mid_way_is_resumed_with_its_run_id_and_books_once(stack, settings):
    import signal

    tenant, table_id, wallet, _ = funded_tenant(stack, 60, "1000")  # 1000 - 60 x 7.5 = 550
    retroactive(stack, tenant, table_id, V2)
    args = ["--customer", tenant.customer_id, *window(), "--yes", "--run-id", "rr_k" + tenant.customer_id]
    victim = subprocess.Popen([sys.executable, "-m", "openmonetize", "replay", *args], cwd=ROOT, env=os.environ,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # killed once it has recorded its adjustments: while it sends them or waits for the ledger
        eventually(lambda: recorded(settings, args[-1]) > 0, timeout_s=60, interval_s=0.01,
                   what="the run to record its adjustments")
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
    assert stored_run(settings, args[-1]).status in ("running", "completed")  # completed: it won the race

    resumed = orjson.loads(replay("--run-id", args[-1], "--yes", "--json").stdout)  # the recorded options
    assert (resumed["status"], resumed["adjusted"], Decimal(resumed["difference"])) == ("completed", 60, 150)
    eventually(lambda: stack.balance(wallet) == Decimal("400"), what="550 - 60 x 2.5, booked once")
    adjustments = ledger(settings, tenant.customer_id, "adjustment")
    assert len(adjustments) == 60 and len({a[0] for a in adjustments}) == 60
    assert reconciled(tenant.customer_id)["mismatches"] == []
