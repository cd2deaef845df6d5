"""This process's holds not yet visible in its wallet.balances view."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from api.holds import Hold, Holds

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
W = "w:cus_a:user:u1"


class Flag:
    def __init__(self):
        self.value = False
        self.closed = False

    def __call__(self) -> bool:
        return self.value

    def close(self) -> None:
        self.closed = True


def hold(rid: str, amount: str, seconds: int = 60, wallet: str = W, flag: Flag | None = None) -> Hold:
    flag = flag or Flag()
    return Hold(rid, "cus_a", wallet, Decimal(amount), NOW + timedelta(seconds=seconds), applied=flag, close=flag.close)


def test_holds_not_yet_applied_are_pending_on_their_wallet():
    holds = Holds()
    assert holds.add(hold("r1", "10")) and holds.add(hold("r2", "2.5")) and holds.add(hold("r3", "7", wallet="other"))
    assert holds.pending(W, NOW) == Decimal("12.5") and holds.pending("other", NOW) == 7
    assert holds.pending("none", NOW) == 0


def test_an_applied_hold_stops_being_pending_but_stays_until_its_expiry():
    holds, flag = Holds(), Flag()
    holds.add(hold("r1", "10", flag=flag))
    flag.value = True
    assert holds.pending(W, NOW) == 0
    assert holds.get("r1") is not None and len(holds) == 1
    assert [h.reservation_id for h in holds.due(NOW + timedelta(seconds=60))] == ["r1"] and flag.closed
    assert len(holds) == 0


def test_a_hold_past_its_expiry_is_not_pending_and_is_due_once():
    holds = Holds()
    holds.add(hold("r1", "10", seconds=5))
    holds.add(hold("r2", "1", seconds=50))
    assert holds.pending(W, NOW + timedelta(seconds=5)) == 1
    assert holds.due(NOW + timedelta(seconds=4)) == []
    assert [h.reservation_id for h in holds.due(NOW + timedelta(seconds=10))] == ["r1"]
    assert holds.due(NOW + timedelta(seconds=10)) == []


def test_a_second_add_of_the_same_reservation_is_refused():
    holds = Holds()
    assert holds.add(hold("r1", "10"))
    assert not holds.add(hold("r1", "10"))
    assert holds.pending(W, NOW) == 10


def test_a_discarded_hold_stops_counting_and_a_later_one_with_its_id_keeps_its_own_expiry():
    holds, flag = Holds(), Flag()
    holds.add(hold("r1", "10", seconds=5, flag=flag))
    assert holds.discard("r1").reservation_id == "r1" and flag.closed
    assert holds.pending(W, NOW) == 0 and holds.discard("r1") is None
    holds.add(hold("r1", "10", seconds=30))  # a retry with the same key after a failed write
    assert holds.due(NOW + timedelta(seconds=10)) == []
    assert holds.pending(W, NOW + timedelta(seconds=10)) == 10
    assert [h.reservation_id for h in holds.due(NOW + timedelta(seconds=30))] == ["r1"]
