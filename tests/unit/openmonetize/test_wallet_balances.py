"""wallet.balances records as processes read them: decoding, and lapsed lots left out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from openmonetize.wallet_balances import Balance
from stream_processors.wallet_step import apply_records, balance_record

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
W, C = "w:cus_a:user:u1", "cus_a"


def command(command_id, kind, amount, **extra):
    return "command", {"command_id": command_id, "customer_id": C, "wallet_id": W, "kind": kind,
                       "amount": Decimal(amount), "requested_at": NOW, **extra}


def test_a_record_becomes_a_balance_with_its_lots_and_applied_ids():
    result = apply_records(None, W, [command("p1", "purchase", "10"), command("r1", "reserve", "3",
                                     expires_at=NOW + timedelta(minutes=5))], policy="allow_overdraft", now=NOW)
    balance = Balance.from_record(balance_record(result.state, NOW, result.applied_ids))
    assert (balance.balance, balance.reserved, balance.available, balance.version) == (10, 3, 7, 2)
    assert [lot.id for lot in balance.grants] == ["p1"] and balance.applied_ids == ("p1", "r1")


def test_a_version_1_record_has_no_lots_and_no_applied_ids():
    record = balance_record(apply_records(None, W, [command("p1", "purchase", "1")], policy="reject", now=NOW).state, NOW)
    balance = Balance.from_record({**record, "grants": None, "applied_ids": None})  # what schema v1 decodes to
    assert balance.grants == () and balance.applied_ids == () and balance.balance == 1


def test_lots_lapsed_by_now_are_left_out_before_the_agent_records_their_expiry():
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=1)
    result = apply_records(None, W, [command("p1", "purchase", "10"), command("g1", "grant", "4", expires_at=soon),
                                     command("g2", "grant", "2.5", expires_at=later)], policy="allow_overdraft", now=NOW)
    balance = Balance.from_record(balance_record(result.state, NOW))
    assert balance.as_of(NOW) is balance
    after = balance.as_of(soon)
    assert (after.balance, after.available) == (Decimal("12.5"), Decimal("12.5"))
    assert [lot.id for lot in after.grants] == ["g2", "p1"]
    assert balance.as_of(later).balance == Decimal(10)


def test_an_unfunded_wallet_is_all_zeros():
    empty = Balance.empty(W, C)
    assert (empty.balance, empty.reserved, empty.available, empty.grants, empty.version) == (0, 0, 0, (), 0)
