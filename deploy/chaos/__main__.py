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
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path


from deploy.chaos.client import AckingClient
from deploy.chaos.faults import FAULTS, Faults
from deploy.chaos.ledger import Ledger
from deploy.chaos.tenants import FUNDED_USERS, Tenants
from deploy.local_stack.stack import Stack
from openmonetize.reconcile import reconcile
from openmonetize.settings import get_settings
from producers.loadgen import EventGenerator

RESULTS = Path(__file__).resolve().parents[2] / "chaos-results.json"


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
