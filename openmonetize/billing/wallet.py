"""A wallet's state and every change to it, as pure functions: the wallet agent's logic.

A wallet holds credit lots (`Grant`s: purchases, promotional grants, credit-back adjustments),
each with what remains of it, an optional expiry and a priority. Usage burns lots in this order
(OpenMeter's): soonest expiry first (lots that never expire last), then lower priority number,
then oldest. Usage beyond all lots either goes into `overdraft` (the wallet's debt, repaid
first by the next purchase) or is refused, per the tenant's unfunded policy. Reservations hold
credits for an entitlement check until the usage that names them settles them, they are
released, or they expire.

    balance   = Σ lots' remaining − overdraft      (= Σ the wallet's ledger entries)
    reserved  = Σ open reservations
    available = balance − reserved

Every change returns the new state and the ledger entries it produced, each with a
deterministic id, so re-applying the same source record (after a crash or rebalance) can be
recognised (`seen`) and, if it slipped through, collapses in the idempotent sinks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import NamedTuple

from openmonetize.billing.money import CONTEXT, ZERO, quantize

RECENT_IDS = 200  # ids of commands (and of debits without a source position) remembered per wallet
REFUSED_IDS = 200  # refused debits remembered, so a DLQ re-drive of one can still be applied
OVERDRAFT_POLICIES = ("allow_overdraft", "reject")


class InsufficientCredits(Exception):
    """The `reject` policy refused a debit larger than what is available."""


class WalletError(ValueError):
    """A command that cannot apply (unknown reservation, non-positive amount, ...)."""


@dataclass(frozen=True)
class Grant:
    """A credit lot. `kind` is the ledger kind that created it (purchase, grant, adjustment);
    `granted` is what it held when created, after repaying any overdraft (None: a lot stored
    before lots recorded it)."""

    grant_id: str
    remaining: Decimal
    created_at: datetime
    expires_at: datetime | None = None
    priority: int = 0
    kind: str = "purchase"
    granted: Decimal | None = None

    def burn_order(self) -> tuple:
        return (self.expires_at is None, self.expires_at or self.created_at, self.priority, self.created_at, self.grant_id)


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    amount: Decimal
    expires_at: datetime


class LedgerEntry(NamedTuple):
    """One money movement; `amount` is signed (negative takes credits away). A named tuple: the
    wallet agent makes one per debit."""

    entry_id: str
    customer_id: str
    wallet_id: str
    kind: str
    amount: Decimal
    balance_after: Decimal
    occurred_at: datetime
    event_id: str | None = None
    command_id: str | None = None
    grant_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class WalletState:
    wallet_id: str
    customer_id: str
    grants: tuple[Grant, ...] = ()
    overdraft: Decimal = ZERO
    reservations: tuple[Reservation, ...] = ()
    version: int = 0
    recent_ids: tuple[str, ...] = field(default=(), repr=False)
    # usage.events partition -> the highest offset of it applied (or refused) here: a debit the
    # usage agent forwards again after a crash is recognised by position, in O(partitions).
    positions: tuple[tuple[int, int], ...] = ()
    refused_ids: tuple[str, ...] = field(default=(), repr=False)

    @property
    def balance(self) -> Decimal:
        return _balance((g.remaining for g in self.grants), self.overdraft)

    @property
    def reserved(self) -> Decimal:
        return _reserved(self.reservations)

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    @property
    def exhausted(self) -> bool:
        return self.available <= 0

    def seen(self, source_id: str) -> bool:
        """Was a record with this id (event or command) already applied to this wallet?"""
        return source_id in self.recent_ids


def entry_id(customer_id: str, source_id: str, wallet_id: str) -> str:
    """Deterministic ledger entry id: the same source record on the same wallet → the same id."""
    digest = hashlib.sha256(f"{customer_id}\x1f{source_id}\x1f{wallet_id}".encode()).hexdigest()
    return f"le_{digest[:32]}"


# --- changes -----------------------------------------------------------------------------
class OpenWallet:
    """A wallet's state opened for a batch of changes: changed in place, then closed once
    (`close`) into a new WalletState. The wallet agent applies a whole batch of one wallet's
    records this way instead of building a new frozen state per change; the pure functions
    below (`debit`, `add_credits`, ...) open a state, make one change and close it, so this is
    the one implementation of every change. A change that raises has changed nothing.
    """

    def __init__(self, state: WalletState):
        self._loaded = state
        self._changed = False
        self.wallet_id = state.wallet_id
        self.customer_id = state.customer_id
        self.lots = [_Lot(g) for g in state.grants]
        self.overdraft = state.overdraft
        # the balance as loaded, then moved by each change (in the 50-digit context) instead of
        # summed again for every ledger entry's balance_after
        self._balance = state.balance
        self.reservations = list(state.reservations)
        self.version = state.version
        self.recent_ids = list(state.recent_ids)
        self.positions = dict(state.positions)
        self._positions = state.positions  # kept as loaded until a position is recorded
        self.refused_ids = list(state.refused_ids)
        self._refused = set(state.refused_ids)  # the same ids, for the look-ups of every debit
        self._in_burn_order = False

    def close(self) -> WalletState:
        """The state after the changes (the very state opened when there were none)."""
        if not self._changed:
            return self._loaded
        positions = self._positions if self._positions is not None else tuple(sorted(self.positions.items()))
        return WalletState(self.wallet_id, self.customer_id, tuple(lot.grant() for lot in self.lots), self.overdraft,
                           tuple(self.reservations), self.version, tuple(self.recent_ids), positions,
                           tuple(self.refused_ids))

    @property
    def balance(self) -> Decimal:
        return quantize(self._balance)

    def seen(self, source_id: str) -> bool:
        """Was a record with this id (event or command) already applied to this wallet?"""
        return source_id in self.recent_ids

    def seen_position(self, partition: int, offset: int, event_id: str) -> bool:
        """Was the usage event at this source position already decided here? A refused one is
        not: re-driven from the DLQ, it may be charged once credits are there."""
        applied = self.positions.get(partition)
        return applied is not None and offset <= applied and event_id not in self._refused

    def at_position(self, partition: int, offset: int, event_id: str, refused: bool) -> None:
        """Record the usage event at (partition, offset) as decided: charged or refused."""
        self.positions[partition] = max(offset, self.positions.get(partition, -1))
        self._positions = None
        self._changed = True
        if event_id in self._refused:
            self.refused_ids = [i for i in self.refused_ids if i != event_id]
        if refused:
            self.refused_ids = [*self.refused_ids[-(REFUSED_IDS - 1):], event_id]
        if refused or event_id in self._refused:
            self._refused = set(self.refused_ids)

    def add_credits(self, *, kind: str, amount: Decimal, source_id: str, at: datetime,
                    expires_at: datetime | None = None, priority: int = 0, event_id: str | None = None,
                    reason: str | None = None) -> LedgerEntry:
        """A purchase, grant or credit-back adjustment: a new lot, after repaying any overdraft."""
        _positive(amount)
        repaid = min(self.overdraft, amount)
        lot = amount - repaid
        if lot > 0:
            self.lots.append(_Lot(Grant(source_id, lot, at, expires_at, priority, kind, lot)))
            self._in_burn_order = False
        self.overdraft = self.overdraft - repaid
        self._balance = CONTEXT.add(self._balance, amount)
        entry = self._entry(kind, amount, source_id, at, event_id=event_id, grant_id=source_id, reason=reason)
        self._record(source_id)
        return entry

    def debit(self, *, kind: str, amount: Decimal, source_id: str, at: datetime, policy: str = "allow_overdraft",
              reservation_id: str | None = None, event_id: str | None = None, reason: str | None = None,
              remember: bool = True) -> LedgerEntry:
        """Usage or a manual consume: burn lots in order; beyond them, overdraft or refuse.

        A debit naming an open reservation settles it: the hold is released and the actual
        amount debited (the hold counts as available for that debit under the `reject` policy).
        """
        if amount < 0:
            raise WalletError(f"amount must be >= 0, got {amount}")
        if policy not in OVERDRAFT_POLICIES:
            raise WalletError(f"unknown unfunded policy {policy!r}; one of {', '.join(OVERDRAFT_POLICIES)}")
        reservations = self.reservations if reservation_id is None else [
            r for r in self.reservations if r.reservation_id != reservation_id]
        if policy == "reject":
            available = self.balance - _reserved(reservations)
            if amount > available:
                raise InsufficientCredits(f"{amount} credits needed, {available} available")
        self.reservations = reservations
        if not self._in_burn_order:
            self.lots.sort(key=_BURN_ORDER)
            self._in_burn_order = True
        remaining = amount
        burned_from = None
        emptied = False
        for lot in self.lots:
            if not remaining:
                break
            take = min(lot.remaining, remaining)
            if take > 0:
                burned_from = burned_from or lot.grant_id
                remaining -= take
                lot.remaining = lot.remaining - take
                emptied = emptied or lot.remaining <= 0
        if emptied:
            self.lots = [lot for lot in self.lots if lot.remaining > 0]
        self.overdraft = self.overdraft + remaining
        self._balance = CONTEXT.subtract(self._balance, amount)
        entry = self._entry(kind, -amount, source_id, at, event_id=event_id, grant_id=burned_from, reason=reason)
        self._record(source_id if remember else None)
        return entry

    def reserve(self, *, reservation_id: str, amount: Decimal, expires_at: datetime,
                policy: str = "allow_overdraft") -> None:
        """Hold credits for a pending call. Under `reject`, only what is available can be held."""
        _positive(amount)
        if any(r.reservation_id == reservation_id for r in self.reservations):
            return  # a retried reserve command
        if policy == "reject":
            available = self.balance - _reserved(self.reservations)
            if amount > available:
                raise InsufficientCredits(f"cannot hold {amount} credits, {available} available")
        self.reservations.append(Reservation(reservation_id, amount, expires_at))
        self._record(reservation_id)

    def release(self, *, reservation_id: str) -> None:
        """Drop a hold (no ledger entry: a hold moves no money). Unknown ids are a no-op: the hold
        may already have been settled or have expired."""
        kept = [r for r in self.reservations if r.reservation_id != reservation_id]
        if len(kept) != len(self.reservations):
            self.reservations = kept
            self._record()

    def expire(self, *, now: datetime) -> list[LedgerEntry]:
        """Lapse lots and holds whose expiry has passed; each lapsed lot gets an `expiry` entry."""
        lapsed = [lot for lot in self.lots if lot.expires_at is not None and lot.expires_at <= now and lot.remaining > 0]
        reservations = [r for r in self.reservations if r.expires_at > now]
        if not lapsed and len(reservations) == len(self.reservations):
            return []
        self.reservations = reservations
        entries = []
        for gone in lapsed:
            self.lots = [lot for lot in self.lots if lot.grant_id != gone.grant_id]
            self._balance = CONTEXT.subtract(self._balance, gone.remaining)
            entries.append(self._entry("expiry", -gone.remaining, f"expiry:{gone.grant_id}", now, grant_id=gone.grant_id))
        self._record()
        return entries

    def _entry(self, kind: str, amount: Decimal, source_id: str, at: datetime, **refs) -> LedgerEntry:
        is_event = refs.get("event_id") is not None
        return LedgerEntry(
            entry_id=entry_id(self.customer_id, source_id, self.wallet_id),
            customer_id=self.customer_id,
            wallet_id=self.wallet_id,
            kind=kind,
            amount=quantize(amount),
            balance_after=self.balance,
            occurred_at=at,
            command_id=None if is_event or kind == "expiry" else source_id,
            **refs,
        )

    def _record(self, source_id: str | None = None) -> None:
        """Count the change (readers of wallet.balances keep the highest version) and remember
        the source id that caused it."""
        self._changed = True
        self.version += 1
        if source_id is not None:
            self.recent_ids.append(source_id)
            if len(self.recent_ids) > RECENT_IDS:
                del self.recent_ids[:-RECENT_IDS]


class _Lot:
    """A Grant whose `remaining` an open wallet changes in place."""

    __slots__ = ("loaded", "remaining", "grant_id", "expires_at", "burn_order")  # burn_order: Grant.burn_order()

    def __init__(self, grant: Grant):
        self.loaded = grant
        self.remaining = grant.remaining
        self.grant_id = grant.grant_id
        self.expires_at = grant.expires_at
        self.burn_order = grant.burn_order()

    def grant(self) -> Grant:
        return self.loaded if self.remaining is self.loaded.remaining else replace(self.loaded, remaining=self.remaining)


_BURN_ORDER = attrgetter("burn_order")


def add_credits(state: WalletState, **change) -> tuple[WalletState, list[LedgerEntry]]:
    """OpenWallet.add_credits on a state: the new state and the ledger entry."""
    wallet = OpenWallet(state)
    entry = wallet.add_credits(**change)
    return wallet.close(), [entry]


def debit(state: WalletState, **change) -> tuple[WalletState, list[LedgerEntry]]:
    """OpenWallet.debit on a state: the new state and the ledger entry."""
    wallet = OpenWallet(state)
    entry = wallet.debit(**change)
    return wallet.close(), [entry]


def reserve(state: WalletState, **change) -> WalletState:
    """OpenWallet.reserve on a state."""
    wallet = OpenWallet(state)
    wallet.reserve(**change)
    return wallet.close()


def release(state: WalletState, *, reservation_id: str) -> WalletState:
    """OpenWallet.release on a state."""
    wallet = OpenWallet(state)
    wallet.release(reservation_id=reservation_id)
    return wallet.close()


def expire(state: WalletState, *, now: datetime) -> tuple[WalletState, list[LedgerEntry]]:
    """OpenWallet.expire on a state: the new state and the `expiry` entries."""
    wallet = OpenWallet(state)
    entries = wallet.expire(now=now)
    return wallet.close(), entries


def replay_balance(entries: Iterable[LedgerEntry]) -> Decimal:
    """The balance a wallet's ledger adds up to (the reconciliation invariant)."""
    total = ZERO
    for entry in entries:
        total = CONTEXT.add(total, entry.amount)
    return quantize(total)


# --- helpers -----------------------------------------------------------------------------
def _positive(amount: Decimal) -> None:
    if amount <= 0:
        raise WalletError(f"amount must be > 0, got {amount}")


def _balance(remaining: Iterable[Decimal], overdraft: Decimal) -> Decimal:
    return quantize(sum(remaining, ZERO) - overdraft)


def _reserved(reservations: Iterable[Reservation]) -> Decimal:
    return quantize(sum((r.amount for r in reservations), ZERO))
