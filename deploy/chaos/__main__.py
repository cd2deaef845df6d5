"""`make chaos`: faults injected into a running stack under steady load, and what they cost.

    python -m deploy.chaos [--scenarios worker_kill,postgres_down] [--rate 200] [--quick]

Run it on a stack of its own (`make chaos` starts one from deploy/chaos.env and stops it after):
it stops Kafka, Postgres and ClickHouse and kills processes. For each scenario: two fresh
tenants with a burn table and funded users; the client (deploy/chaos/client.py) sends generated
events with 5% client retries at a steady rate through HTTP ingest, re-sending a failed batch
with the same ids, and records each event the API acknowledged; after a warm-up the fault is
injected, held, undone; the load goes on, stops, and the pipeline drains. Then, from the
client's own record:

- `lost`: acknowledged but never charged (no `usage_debit` in the Postgres ledger);
- `double_charged`: events debited more than once (more than one ledger entry id for the event
  in `ledger.entries`, or one entry id carrying two different balances: applied twice);
- `clickhouse_rows` vs `charged`: rows in `usage_events` (without FINAL, so the rollups too);
- `reconcile_clean`: `openmonetize reconcile` for the tenants over all sources;
- `recovery_s`: from the fault undone until the Postgres ledger and ClickHouse both hold every
  event acknowledged before (null: not within the drain deadline).

Writes chaos-results.json at the repository root; exit code 1 when a scenario lost or double
charged anything, or did not reconcile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg

from deploy.bench.pipeline import RULES
from deploy.chaos.client import AckingClient
from deploy.chaos.faults import FAULTS, Faults
from deploy.local_stack.stack import Stack
from openmonetize import clickhouse_client
from openmonetize.reconcile import reconcile
from openmonetize.settings import Settings, get_settings
from producers.loadgen import EventGenerator

RESULTS = Path(__file__).resolve().parents[2] / "chaos-results.json"
FUNDED_USERS = 10


@dataclass
class Outcome:
    name: str
    accepted: int = 0
    lost: int = 0
    double_charged: int = 0
    charged: int = 0
    clickhouse_rows: int = 0
    reconcile_clean: bool = False
    recovery_s: float | None = None
    client_retries: dict[str, int] = field(default_factory=dict)
    notes: str = ""

    @property
    def passed(self) -> bool:
        return (self.lost == 0 and self.double_charged == 0 and self.reconcile_clean
                and self.clickhouse_rows == self.charged == self.accepted)


class Tenants:
    """Fresh tenants for one scenario: a burn table covering every generated event, funded users."""

    def __init__(self, settings: Settings, count: int = 2):
        from api.tenants import create_customer

        tag = uuid.uuid4().hex[:6]
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            created = [create_customer(conn, f"chaos-{tag}-{i + 1}") for i in range(count)]
        self.keys = {t.customer_id: t.api_key for t in created}
        with httpx.Client(base_url=settings.api_url, timeout=30) as api:
            for customer, key in self.keys.items():
                headers = {"X-OM-Api-Key": key}
                answer = api.post("/v1/burn-tables", headers=headers, json={
                    "name": "chaos", "rules": RULES,
                    "effective_from": (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()})
                answer.raise_for_status()
                for user in range(FUNDED_USERS):
                    bought = api.post("/v1/credits/purchase", params={"wait": "true"}, headers=headers, json={
                        "customer_id": customer, "user_id": f"user-{user}", "amount": "100000"})
                    bought.raise_for_status()

    @property
    def ids(self) -> list[str]:
        return list(self.keys)


class Ledger:
    """What the sinks and the ledger topic say about the scenario's tenants."""

    def __init__(self, settings: Settings, customers: list[str]):
        self.settings, self.customers = settings, customers
        self.clickhouse = clickhouse_client.get_client(settings, "writer", database=settings.clickhouse_database)

    def charged(self) -> set[tuple[str, str]]:
        with psycopg.connect(self.settings.database_url, connect_timeout=5) as conn:
            rows = conn.execute("SELECT DISTINCT customer_id, event_id FROM ledger_entries "
                                "WHERE customer_id = ANY(%s) AND kind = 'usage_debit'", (self.customers,)).fetchall()
        return set(rows)

    def charged_count(self) -> int:
        try:
            with psycopg.connect(self.settings.database_url, connect_timeout=3) as conn:
                return conn.execute("SELECT count(DISTINCT (customer_id, event_id)) FROM ledger_entries "
                                    "WHERE customer_id = ANY(%s) AND kind = 'usage_debit'",
                                    (self.customers,)).fetchone()[0]
        except psycopg.Error:
            return -1  # Postgres is away: unknown

    def caught_up(self, owed: int) -> bool:
        """Both the Postgres ledger and ClickHouse hold at least `owed` of the events (False while
        either is away)."""
        try:
            return self.charged_count() >= owed and self.clickhouse_rows(final=True) >= owed
        except Exception:  # noqa: BLE001 - ClickHouse away
            return False

    def clickhouse_rows(self, final: bool = False) -> int:
        return self.clickhouse.command(
            f"SELECT count() FROM usage_events {'FINAL' if final else ''} WHERE customer_id IN {{c:Array(String)}}",
            parameters={"c": self.customers})

    def double_charged(self) -> int:
        """Events with more than one usage_debit entry id, or an entry id with two balances."""
        from psycopg_pool import ConnectionPool

        from openmonetize.dlq import reader_codec
        from openmonetize.topic_reader import read_to_end
        from schemas.registry import SchemaRegistry
        from schemas.topics import topics

        spec = topics(self.settings).ledger_entries
        customers = set(self.customers)
        seen: dict[tuple[str, str], set[tuple[str, object]]] = {}
        with ConnectionPool(self.settings.database_url, min_size=1, max_size=1, open=True) as pool:
            codec = reader_codec(SchemaRegistry(pool), spec)
            for message in read_to_end(self.settings.kafka_bootstrap, spec.name):
                entry = codec.decode(message.value())
                if entry["customer_id"] in customers and entry["kind"] == "usage_debit":
                    seen.setdefault((entry["customer_id"], entry["event_id"]), set()).add(
                        (entry["entry_id"], entry["balance_after"]))
        return sum(1 for versions in seen.values() if len(versions) > 1)

    def close(self) -> None:
        self.clickhouse.close()


def run_scenario(stack: Stack, fault, rate: float, warm_s: float, after_s: float, say) -> Outcome:
    settings = stack.settings
    tenants = Tenants(settings)
    ledger = Ledger(settings, tenants.ids)
    # users beyond the funded ones (and teams, which have no wallet) are charged to the tenant's wallet
    generator = EventGenerator(seed=zlib.crc32(fault.name.encode()), tenants=tenants.ids, users=2 * FUNDED_USERS,
                               duplicate_share=0.05)
    client = AckingClient(settings.api_url, tenants.keys, iter(generator), rate)
    outcome = Outcome(fault.name, notes=fault.notes)
    faults = Faults(stack)
    client.start()
    time.sleep(warm_s)  # the load runs undisturbed first
    say(f"  {fault.name}: {client.acknowledged_count():,} acknowledged; injecting")
    fault.inject(faults)
    time.sleep(fault.hold_s)  # the fault lasts this long
    fault.restore(faults)
    restored_at, owed = time.monotonic(), client.acknowledged_count()
    say(f"  {fault.name}: undone; {owed:,} acknowledged so far")
    deadline = time.monotonic() + after_s
    while time.monotonic() < deadline:
        if outcome.recovery_s is None and ledger.caught_up(owed):
            outcome.recovery_s = round(time.monotonic() - restored_at, 1)
        time.sleep(0.5)  # poll interval while the load goes on
    client.stop()
    outcome.accepted = len(client.acknowledged)
    outcome.client_retries = dict(client.retries)

    deadline = time.monotonic() + 240
    while not ledger.caught_up(outcome.accepted) and time.monotonic() < deadline:
        if outcome.recovery_s is None and ledger.caught_up(owed):
            outcome.recovery_s = round(time.monotonic() - restored_at, 1)
        time.sleep(0.5)  # poll interval while the pipeline drains
    if outcome.recovery_s is None and ledger.caught_up(owed):
        outcome.recovery_s = round(time.monotonic() - restored_at, 1)
    charged = ledger.charged()
    outcome.charged = len(charged & client.acknowledged)
    outcome.lost = len(client.acknowledged - charged)
    outcome.double_charged = ledger.double_charged()
    outcome.clickhouse_rows = ledger.clickhouse_rows()
    outcome.reconcile_clean = all(not reconcile(settings, customer).mismatches for customer in tenants.ids)
    ledger.close()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(f.name for f in FAULTS),
                        help="comma-separated, in this order by default: %(default)s")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s the client sends (default %(default)s)")
    parser.add_argument("--warm", type=float, default=8.0, help="seconds of load before the fault")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after the fault is undone")
    args = parser.parse_args()
    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    known = {f.name: f for f in FAULTS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(known)}")

    def say(line: str) -> None:
        print(line, flush=True)

    stack = Stack(get_settings(), say=lambda line: None)
    outcomes = []
    started = time.monotonic()
    for name in wanted:
        say(f"scenario {name}")
        outcome = run_scenario(stack, known[name], args.rate, args.warm, args.after, say)
        outcomes.append(outcome)
        say(f"  {name}: accepted {outcome.accepted:,}, lost {outcome.lost}, double charged "
            f"{outcome.double_charged}, ClickHouse rows {outcome.clickhouse_rows:,}, reconcile "
            f"{'clean' if outcome.reconcile_clean else 'DRIFT'}, recovery {outcome.recovery_s} s "
            f"-> {'ok' if outcome.passed else 'FAILED'}")
    RESULTS.write_text(json.dumps({
        "scenarios": [{**asdict(o), "passed": o.passed} for o in outcomes],
        "rate_events_per_s": args.rate, "seconds": round(time.monotonic() - started),
    }, indent=2) + "\n")
    print()
    print("| scenario | accepted | lost | double charged | ClickHouse rows | reconcile | recovery s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for o in outcomes:
        print(f"| {o.name} | {o.accepted:,} | {o.lost} | {o.double_charged} | {o.clickhouse_rows:,} | "
              f"{'clean' if o.reconcile_clean else 'drift'} | {o.recovery_s} |")
    print(f"\nsaved to {RESULTS}")
    if not all(o.passed for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
