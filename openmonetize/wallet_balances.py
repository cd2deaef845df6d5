"""The wallet.balances topic as a process reads it: every wallet's latest balance in memory
(a CompactedView), and a way to wait until a command was applied.

Reads of balances never cost a database round trip (DESIGN: "reads that must be fast come from
in-process views fed by compacted topics"): the credits routes read `get`, and entitlement
checks will. A writer of a command watches for its id before producing it (`watch`): each
balance record names the command and event ids it applied (`applied_ids`), and the view's
thread resolves the watchers of those ids before the record counts as read.

The view is as fresh as the wallet agent's last published change: lots whose expiry has passed
lapse in the agent only when the wallet is next touched, so `Balance.as_of(now)` leaves them
out (and their credits out of the balance) for readers who must not show expired credits.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from openmonetize.billing.money import ZERO, total
from openmonetize.compacted_view import CompactedView
from schemas.codec import AvroCodec


@dataclass(frozen=True)
class Lot:
    """A credit lot, as on wallet.balances (its `grants`)."""

    id: str
    kind: str
    granted: Decimal
    remaining: Decimal
    expires_at: datetime | None
    priority: int
    granted_at: datetime


@dataclass(frozen=True)
class Balance:
    wallet_id: str
    customer_id: str
    balance: Decimal
    reserved: Decimal
    available: Decimal
    grants: tuple[Lot, ...]
    version: int
    updated_at: datetime | None
    applied_ids: tuple[str, ...] = ()

    @classmethod
    def empty(cls, wallet_id: str, customer_id: str) -> Balance:
        """A wallet that was never funded nor charged."""
        return cls(wallet_id, customer_id, ZERO, ZERO, ZERO, (), 0, None)

    @classmethod
    def from_record(cls, record: dict) -> Balance:
        return cls(
            wallet_id=record["wallet_id"],
            customer_id=record["customer_id"],
            balance=record["balance"],
            reserved=record["reserved"],
            available=record["available"],
            grants=tuple(Lot(**lot) for lot in record.get("grants") or ()),
            version=record["version"],
            updated_at=record["updated_at"],
            applied_ids=tuple(record.get("applied_ids") or ()),
        )

    def as_of(self, now: datetime) -> Balance:
        """This balance with the lots lapsed by `now` left out and their credits taken off."""
        lapsed = [lot for lot in self.grants if lot.expires_at is not None and lot.expires_at <= now]
        if not lapsed:
            return self
        gone = total(lot.remaining for lot in lapsed)
        return replace(
            self,
            balance=total((self.balance, -gone)),
            available=total((self.available, -gone)),
            grants=tuple(lot for lot in self.grants if lot not in lapsed),
        )


class WalletBalances:
    """Every wallet's latest Balance, read from all partitions of wallet.balances."""

    def __init__(self, bootstrap: str, topic: str, codec: AvroCodec):
        self._codec = codec
        self._watchers: dict[str, list[Watch]] = {}
        self._lock = threading.Lock()
        self.view: CompactedView[Balance] = CompactedView(bootstrap, topic, self._decode, on_update=self._on_update)

    def start(self) -> WalletBalances:
        self.view.start()
        return self

    def close(self) -> None:
        self.view.close()

    def wait_until_current(self, timeout_s: float = 30.0) -> bool:
        return self.view.wait_until_current(timeout_s)

    def get(self, wallet_id: str) -> Balance | None:
        return self.view.get(wallet_id)

    def watch(self, wallet_id: str, command_id: str) -> Watch:
        """Start watching for a command BEFORE producing it (then `await watch.applied(...)`)."""
        watch = Watch(self, wallet_id, command_id, asyncio.get_running_loop())
        with self._lock:
            self._watchers.setdefault(command_id, []).append(watch)
        return watch

    def _forget(self, watch: Watch) -> None:
        with self._lock:
            watchers = self._watchers.get(watch.command_id, [])
            if watch in watchers:
                watchers.remove(watch)
            if not watchers:
                self._watchers.pop(watch.command_id, None)

    def _decode(self, raw: bytes) -> Balance:
        return Balance.from_record(self._codec.decode(raw))

    def _on_update(self, _key: str, balance: Balance | None) -> None:
        """On the view's thread: resolve whoever waits for an id this record applied."""
        if balance is None or not self._watchers:
            return
        with self._lock:
            found = [w for applied in balance.applied_ids for w in self._watchers.pop(applied, ())]
        for watch in found:
            watch.loop.call_soon_threadsafe(watch.resolve, balance)


class Watch:
    """One request waiting for its command to show up in a balance record."""

    def __init__(self, owner: WalletBalances, wallet_id: str, command_id: str, loop: asyncio.AbstractEventLoop):
        self.owner = owner
        self.wallet_id = wallet_id
        self.command_id = command_id
        self.loop = loop
        self.future: asyncio.Future[Balance] = loop.create_future()

    def resolve(self, balance: Balance) -> None:
        if not self.future.done():
            self.future.set_result(balance)

    async def applied(self, timeout_s: float) -> Balance | None:
        """The first balance record that applied the command, or None after `timeout_s`.
        A record read before the watch began counts if it is still the wallet's latest."""
        try:
            latest = self.owner.get(self.wallet_id)
            if latest is not None and self.command_id in latest.applied_ids:
                return latest
            return await asyncio.wait_for(self.future, timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            self.close()

    def close(self) -> None:
        self.owner._forget(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
