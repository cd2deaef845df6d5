from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmonetize.billing.wallet import (
    InsufficientCredits,
    WalletError,
    WalletState,
    add_credits,
    debit,
    entry_id,
    expire,
    release,
    replay_balance,
    reserve,
)

T0 = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
D = Decimal


def wallet() -> WalletState:
    return WalletState("w_user_1", "cus_a")


def funded(*lots) -> WalletState:
    """lots: (id, amount, expires_in_days or None, priority)"""
    state = wallet()
    for i, (grant_id, amount, days, priority) in enumerate(lots):
        expires = T0 + timedelta(days=days) if days is not None else None
        state, _ = add_credits(state, kind="grant", amount=D(amount), source_id=grant_id,
                               at=T0 + timedelta(seconds=i), expires_at=expires, priority=priority)
    return state


def test_burn_order_soonest_expiry_then_priority_then_oldest_never_expiring_last():
    state = funded(("forever", 10, None, 0), ("late", 10, 30, 0), ("soon_low", 10, 7, 5), ("soon_high", 10, 7, 1))
    state, [entry] = debit(state, kind="usage_debit", amount=D(15), source_id="e1", at=T0, event_id="e1")
    remaining = {g.grant_id: g.remaining for g in state.grants}
    assert "soon_high" not in remaining  # fully burned first (priority 1 before 5)
    assert remaining == {"forever": 10, "late": 10, "soon_low": 5}
    assert entry.grant_id == "soon_high" and entry.amount == D("-15") and entry.balance_after == D(25)


def test_overdraft_policy_goes_negative_and_the_next_purchase_repays_it():
    state, [entry] = debit(funded(("g", 5, None, 0)), kind="usage_debit", amount=D(8), source_id="e1", at=T0, event_id="e1")
    assert state.balance == D(-3) and state.overdraft == D(3) and state.exhausted
    state, [purchase] = add_credits(state, kind="purchase", amount=D(10), source_id="p1", at=T0)
    assert state.balance == D(7) and state.overdraft == 0
    assert purchase.amount == D(10) and purchase.balance_after == D(7) and purchase.command_id == "p1"


def test_reject_policy_refuses_without_changing_anything():
    state = funded(("g", 5, None, 0))
    with pytest.raises(InsufficientCredits, match="8 credits needed, 5"):
        debit(state, kind="usage_debit", amount=D(8), source_id="e1", at=T0, policy="reject", event_id="e1")
    assert state.balance == 5 and not state.seen("e1")


def test_reservation_holds_then_the_usage_that_names_it_settles_it():
    state = reserve(funded(("g", 10, None, 0)), reservation_id="r1", amount=D(7), expires_at=T0 + timedelta(minutes=5))
    assert (state.balance, state.reserved, state.available) == (D(10), D(7), D(3))
    with pytest.raises(InsufficientCredits):
        reserve(state, reservation_id="r2", amount=D(4), expires_at=T0 + timedelta(minutes=5), policy="reject")
    # under reject, the settled hold counts as available for its own usage
    state, _ = debit(state, kind="usage_debit", amount=D("6.5"), source_id="e1", at=T0,
                     policy="reject", reservation_id="r1", event_id="e1")
    assert (state.balance, state.reserved) == (D("3.5"), 0)


def test_release_and_expiry_of_holds():
    state = reserve(funded(("g", 10, None, 0)), reservation_id="r1", amount=D(7), expires_at=T0 + timedelta(minutes=5))
    assert release(state, reservation_id="r1").reserved == 0
    assert release(state, reservation_id="unknown") is state
    lapsed, entries = expire(state, now=T0 + timedelta(minutes=5))
    assert lapsed.reserved == 0 and entries == []  # a hold moves no money


def test_expired_lots_lapse_with_an_entry():
    state = funded(("soon", 4, 1, 0), ("later", 6, 10, 0))
    state, [entry] = expire(state, now=T0 + timedelta(days=1))
    assert entry.kind == "expiry" and entry.amount == D(-4) and entry.grant_id == "soon" and entry.balance_after == D(6)
    assert expire(state, now=T0 + timedelta(days=1)) == (state, [])  # nothing more to lapse


def test_entry_ids_are_deterministic_per_customer_source_and_wallet():
    _, [a] = debit(funded(("g", 5, None, 0)), kind="usage_debit", amount=D(1), source_id="e1", at=T0, event_id="e1")
    _, [b] = debit(funded(("g", 9, None, 0)), kind="usage_debit", amount=D(2), source_id="e1", at=T0, event_id="e1")
    assert a.entry_id == b.entry_id == entry_id("cus_a", "e1", "w_user_1")
    assert entry_id("cus_a", "e1", "w_team_1") != a.entry_id


def test_applied_sources_are_remembered():
    state, _ = debit(funded(("g", 5, None, 0)), kind="usage_debit", amount=D(1), source_id="e1", at=T0, event_id="e1")
    assert state.seen("e1") and state.seen("g") and not state.seen("e2")


@pytest.mark.parametrize("amount", [D(0), D(-1)])
def test_credits_added_must_be_positive(amount):
    with pytest.raises(WalletError, match="must be > 0"):
        add_credits(wallet(), kind="purchase", amount=amount, source_id="p", at=T0)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.decimals("0.000000000001", "1000", places=12), st.one_of(st.none(), st.integers(1, 20)), st.integers(0, 3)),
        st.tuples(st.just("debit"), st.decimals("0", "500", places=12)),
        st.tuples(st.just("expire"), st.integers(0, 25)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_balance_always_equals_the_sum_of_its_ledger_entries(ops):
    """The reconciliation invariant, over any sequence of changes."""
    state, ledger = wallet(), []
    for i, op in enumerate(ops):
        if op[0] == "add":
            _, amount, days, priority = op
            expires = T0 + timedelta(days=days) if days else None
            state, entries = add_credits(state, kind="grant", amount=amount, source_id=f"g{i}", at=T0, expires_at=expires, priority=priority)
        elif op[0] == "debit":
            state, entries = debit(state, kind="usage_debit", amount=op[1], source_id=f"e{i}", at=T0, event_id=f"e{i}")
        else:
            state, entries = expire(state, now=T0 + timedelta(days=op[1]))
        ledger += entries
        assert state.balance == replay_balance(ledger)
        assert all(e.balance_after == replay_balance(ledger[: ledger.index(e) + 1]) for e in entries)
        assert all(g.remaining > 0 for g in state.grants) and state.overdraft >= 0
