"""The pure parts of the Postgres ledger sink: record → row, offsets to commit, and the
Postgres side of reconcile."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from openmonetize.reconcile import check_postgres
from sinks.batch_consumer import commit_positions
from sinks.ledger_postgres import COLUMNS, to_row

AT = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def entry(**fields) -> dict:
    record = {"entry_id": "le_1", "customer_id": "cus_a", "wallet_id": "w:cus_a:user:u", "kind": "usage_debit",
              "amount": Decimal("-3.5"), "balance_after": Decimal("96.5"), "event_id": "evt_1", "command_id": None,
              "grant_id": "cmd_9", "reason": None, "occurred_at": AT, "recorded_at": AT, "metadata": None}
    record.update(fields)
    return record


def test_a_record_maps_to_a_row_in_column_order():
    row = dict(zip(COLUMNS, to_row(entry(), partition=4, offset=17)))
    assert row == {"entry_id": "le_1", "customer_id": "cus_a", "wallet_id": "w:cus_a:user:u", "kind": "usage_debit",
                   "amount": Decimal("-3.5"), "balance_after": Decimal("96.5"), "event_id": "evt_1",
                   "command_id": None, "grant_id": "cmd_9", "reservation_id": None, "burn_table_version": None,
                   "reason": None, "metadata": None, "occurred_at": AT, "applied_at": AT,
                   "kafka_partition": 4, "kafka_offset": 17}


def test_burn_table_version_and_reservation_come_from_metadata_when_present():
    row = dict(zip(COLUMNS, to_row(entry(metadata={"burn_table_version": "3", "reservation_id": "res_1"}), 0, 0)))
    assert (row["burn_table_version"], row["reservation_id"]) == (3, "res_1")
    assert row["metadata"] == '{"burn_table_version":"3","reservation_id":"res_1"}'
    assert dict(zip(COLUMNS, to_row(entry(metadata={"x": "y"}), 0, 0)))["burn_table_version"] is None


def test_offsets_to_commit_are_one_past_the_highest_per_partition():
    assert commit_positions([(0, 5), (1, 9), (0, 7), (0, 6), (2, 0)]) == {0: 8, 1: 10, 2: 1}
    assert commit_positions([]) == {}


def test_postgres_sums_against_balances():
    balances = {"w:a": Decimal("10"), "w:b": Decimal("5"), "w:zero": Decimal("0")}
    sums = {"w:a": (Decimal("10"), 3), "w:b": (Decimal("4"), 2), "w:ghost": (Decimal("1"), 1)}
    found = {m.wallet_id: m for m in check_postgres(balances, sums)}
    assert sorted(found) == ["w:b", "w:ghost"]
    assert found["w:b"].problem == "balance differs from the postgres ledger" and found["w:b"].entries == 2
    assert found["w:ghost"].balance is None
    assert check_postgres({"w:x": Decimal("2")}, {})[0].ledger_sum == Decimal("0")
