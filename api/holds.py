"""The holds this API process made that its view of wallet.balances may not show yet.

An entitlement check that reserves writes a `reserve` command and answers at once; the wallet
agent applies it some milliseconds later, and only then does `reserved` on wallet.balances
include it. Meanwhile a second check in this process would see the credits as still available
and could hold them again. So each hold is registered here, synchronously, before the command
is produced, and `pending(wallet)` (what the view does not show yet) is subtracted from the
view's `available`. A hold stops being pending once the view has applied it (`applied()`: the
process watches for its id on wallet.balances), and leaves the registry at its expiry, when
the route asks the wallet agent to lapse it (`due`).

Holds made by OTHER processes are invisible here until the agent applies them: that window
(docs/guides/credits-and-entitlements.md, Entitlements) is what `?wait=true` closes.

Pure (no I/O, the clock is passed in), so its rules are unit tested (tests/unit/api/test_holds.py).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from openmonetize.billing.money import ZERO, total


@dataclass(eq=False)
class Hold:
    reservation_id: str
    customer_id: str
    wallet_id: str
    amount: Decimal
    expires_at: datetime
    applied: Callable[[], bool] = field(default=lambda: False, repr=False)  # the view shows it
    close: Callable[[], None] = field(default=lambda: None, repr=False)  # stop watching for it


class Holds:
    def __init__(self) -> None:
        self._by_id: dict[str, Hold] = {}
        self._pending: dict[str, dict[str, Hold]] = {}  # wallet -> holds not yet applied in the view
        self._expiries: list[tuple[datetime, int, str]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, hold: Hold) -> bool:
        """Register a hold about to be written; False (nothing registered) if this process
        already holds that reservation id (a retry racing its twin)."""
        if hold.reservation_id in self._by_id:
            return False
        self._by_id[hold.reservation_id] = hold
        self._pending.setdefault(hold.wallet_id, {})[hold.reservation_id] = hold
        heapq.heappush(self._expiries, (hold.expires_at, next(self._sequence), hold.reservation_id))
        return True

    def get(self, reservation_id: str) -> Hold | None:
        return self._by_id.get(reservation_id)

    def pending(self, wallet_id: str, now: datetime) -> Decimal:
        """Credits this process holds on the wallet that the view does not show yet: neither
        applied by the agent nor past their expiry. Applied holds stop being pending here."""
        holds = self._pending.get(wallet_id)
        if not holds:
            return ZERO
        for reservation_id in [rid for rid, hold in holds.items() if hold.applied() or hold.expires_at <= now]:
            del holds[reservation_id]
        if not holds:
            del self._pending[wallet_id]
            return ZERO
        return total(hold.amount for hold in holds.values())

    def discard(self, reservation_id: str) -> Hold | None:
        """Forget a hold (released, or never written); it stops counting at once."""
        hold = self._by_id.pop(reservation_id, None)
        if hold is not None:
            self._unpend(hold)
            hold.close()
        return hold

    def due(self, now: datetime) -> list[Hold]:
        """The holds whose expiry is at or before `now`, removed from the registry."""
        out = []
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, _, reservation_id = heapq.heappop(self._expiries)
            hold = self._by_id.get(reservation_id)
            if hold is not None and hold.expires_at == expires_at:  # not a later hold re-using a discarded id
                del self._by_id[reservation_id]
                self._unpend(hold)
                hold.close()
                out.append(hold)
        return out

    def _unpend(self, hold: Hold) -> None:
        holds = self._pending.get(hold.wallet_id)
        if holds is not None:
            holds.pop(hold.reservation_id, None)
            if not holds:
                del self._pending[hold.wallet_id]
