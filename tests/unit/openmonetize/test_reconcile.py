from decimal import Decimal

from openmonetize.reconcile import check, latest_balances


def entry(entry_id, wallet, amount):
    return {"entry_id": entry_id, "wallet_id": wallet, "amount": Decimal(amount)}


def test_a_balance_equal_to_its_ledger_holds_and_a_re_emitted_entry_counts_once():
    entries = [entry("p", "w1", "10"), entry("d", "w1", "-2.5"), entry("d", "w1", "-2.5")]
    assert check({"w1": Decimal("7.5")}, entries) == []


def test_every_kind_of_violation_is_reported_with_its_wallet():
    entries = [entry("p", "w1", "10"), entry("x", "w2", "-1"), entry("y", "w3", "1"), entry("y", "w3", "2")]
    found = {m.wallet_id: m.problem for m in check({"w1": Decimal("9"), "w3": Decimal("1")}, entries)}
    assert found == {"w1": "balance differs from the ledger", "w2": "ledger entries but no balance",
                     "w3": "an entry id with two amounts"}


def test_the_newest_balance_version_wins_whatever_the_order():
    records = [{"wallet_id": "w", "version": 3, "balance": Decimal(3)}, {"wallet_id": "w", "version": 1, "balance": Decimal(1)}]
    assert latest_balances(records) == {"w": Decimal(3)}


def test_clickhouse_owes_a_rebilled_events_adjustments_only_once_its_row_was_rewritten():
    from openmonetize.reconcile import with_rebilled

    debits = {"w1": (Decimal("15"), 2)}
    adjustments = [("c", "w1", "e1", Decimal("-2.5")), ("c", "w1", "e2", Decimal("1")), ("d", "w2", "e1", Decimal("-9"))]
    assert with_rebilled(debits, adjustments, set()) == debits
    assert with_rebilled(debits, adjustments, {("c", "e1")}) == {"w1": (Decimal("17.5"), 2)}
    assert with_rebilled(debits, adjustments, {("c", "e1"), ("c", "e2")}) == {"w1": (Decimal("16.5"), 2)}
