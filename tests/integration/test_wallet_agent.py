"""The wallet agent against the real broker: commands and debits in, ledger and balances out,
each record charged once even when the worker is killed -9 mid-stream.

Each test runs an `IsolatedPipeline`: own topics, own consumer group, own worker processes.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from openmonetize.billing.money import total
from tests.conftest import eventually
from tests.integration.isolated import IsolatedPipeline


@pytest.fixture
def pipeline(settings, tmp_path):
    p = IsolatedPipeline(settings, tmp_path)
    yield p
    p.stop()


def test_commands_and_debits_move_the_balance_once(pipeline):
    wallet, customer = "w:cus_t:user:u1", "cus_t"
    pipeline.command(wallet, customer, "purchase", "100", command_id="p1")
    pipeline.command(wallet, customer, "purchase", "100", command_id="p1")  # a client retry: same id
    for i in range(50):
        pipeline.debit(wallet, customer, f"e{i}", Decimal("1.5"))
    for i in range(10):
        pipeline.debit(wallet, customer, f"e{i}", Decimal("1.5"))  # re-delivered debits
    pipeline.flush()
    pipeline.start_worker()

    balance = eventually(lambda: (b := pipeline.balances().get(wallet)) and b["version"] >= 51 and b,
                         timeout_s=90, what="the wallet's balance after 51 changes")
    assert balance["balance"] == Decimal("25") and balance["available"] == Decimal("25")
    ledger = pipeline.ledger()
    assert len(ledger) == 51
    assert total(e["amount"] for e in ledger.values()) == balance["balance"]
    kinds = sorted(e["kind"] for e in ledger.values())
    assert kinds.count("purchase") == 1 and kinds.count("usage_debit") == 50
    # The group's offsets follow the applied markers, so lag tools (`stack status`) see the work done.
    eventually(lambda: pipeline.committed(pipeline.topics.wallet_debits.name) == 60
               and pipeline.committed(pipeline.topics.wallet_commands.name) == 2,
               timeout_s=30, interval_s=0.5, what="the worker group's committed offsets at the end of its sources")


def test_kill_9_mid_stream_charges_every_debit_exactly_once(pipeline):
    rng = random.Random(7)
    wallets = [f"w:cus_k:user:u{i}" for i in range(20)]
    expected = {w: Decimal(0) for w in wallets}
    events = []
    for i in range(1200):
        wallet = rng.choice(wallets)
        credits = Decimal(rng.randint(1, 5000)) / 1000
        events.append((wallet, f"ev{i}", credits))
        expected[wallet] -= credits
    pipeline.start_worker()
    for chunk in range(3):
        applied_before = eventually(lambda: pipeline.ledger_size() + 1, what="the ledger topic's watermarks") - 1
        for wallet, event_id, credits in events[chunk * 400:(chunk + 1) * 400]:
            pipeline.debit(wallet, "cus_k", event_id, credits)
            if rng.random() < 0.05:  # client retries reach the wallet too
                pipeline.debit(wallet, "cus_k", event_id, credits)
        pipeline.flush()
        # Kill once this worker has applied part of the chunk: mid-stream, never between chunks.
        eventually(lambda: pipeline.ledger_size() > applied_before, timeout_s=90, interval_s=0.02,
                   what="the restarted worker to apply debits")
        pipeline.kill_worker()
        pipeline.start_worker()

    def settled():
        balances = pipeline.balances()
        off = {w: (balances.get(w, {}).get("balance"), expected[w]) for w in wallets
               if balances.get(w, {}).get("balance") != expected[w]}
        assert not off, (f"{len(off)} wallets not at their balance (got, expected), e.g. {list(off.items())[:3]}; "
                         f"worker exits the test did not cause: {pipeline.exits}")
        return balances

    balances = eventually(settled, timeout_s=120, interval_s=1, what="every wallet to settle at its exact balance")
    ledger = pipeline.ledger()
    assert len([e for e in ledger.values() if e["kind"] == "usage_debit"]) == len(events)  # each event charged once
    for wallet in wallets:
        assert total(e["amount"] for e in ledger.values() if e["wallet_id"] == wallet) == balances[wallet]["balance"]
