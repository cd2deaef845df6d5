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


@dataclass(frozen=True)
class LedgerEntry:
    """One money movement; `amount` is signed (negative takes credits away)."""

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
        return quantize(sum((g.remaining for g in self.grants), ZERO) - self.overdraft)

    @property
    def reserved(self) -> Decimal:
        return quantize(sum((r.amount for r in self.reservations), ZERO))

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    @property
    def exhausted(self) -> bool:
        return self.available <= 0

    def seen(self, source_id: str) -> bool:
        """Was a record with this id (event or command) already applied to this wallet?"""
        return source_id in self.recent_ids

    def seen_position(self, partition: int, offset: int, event_id: str) -> bool:
        """Was the usage event at this source position already decided here? A refused one is
        not: re-driven from the DLQ, it may be charged once credits are there."""
        applied = dict(self.positions).get(partition)
        return applied is not None and offset <= applied and event_id not in self.refused_ids

    def at_position(self, partition: int, offset: int, event_id: str, refused: bool) -> WalletState:
        """This state with the usage event at (partition, offset) decided: charged or refused."""
        positions = dict(self.positions)
        positions[partition] = max(offset, positions.get(partition, -1))
        others = tuple(i for i in self.refused_ids if i != event_id)
        refused_ids = (*others[-(REFUSED_IDS - 1):], event_id) if refused else others
        return replace(self, positions=tuple(sorted(positions.items())), refused_ids=refused_ids)


def entry_id(customer_id: str, source_id: str, wallet_id: str) -> str:
    """Deterministic ledger entry id: the same source record on the same wallet → the same id."""
    digest = hashlib.sha256(f"{customer_id}\x1f{source_id}\x1f{wallet_id}".encode()).hexdigest()
    return f"le_{digest[:32]}"


# --- changes -----------------------------------------------------------------------------
def add_credits(
    state: WalletState,
    *,
    kind: str,
    amount: Decimal,
    source_id: str,
    at: datetime,
    expires_at: datetime | None = None,
    priority: int = 0,
    event_id: str | None = None,
    reason: str | None = None,
) -> tuple[WalletState, list[LedgerEntry]]:
    """A purchase, grant or credit-back adjustment: a new lot, after repaying any overdraft."""
    _positive(amount)
    repaid = min(state.overdraft, amount)
    lot = amount - repaid
    grants = state.grants + ((Grant(source_id, lot, at, expires_at, priority, kind, lot),) if lot > 0 else ())
    new = replace(state, grants=grants, overdraft=state.overdraft - repaid)
    entry = _entry(new, kind, amount, source_id, at, event_id=event_id, grant_id=source_id, reason=reason)
    return _record(new, source_id), [entry]


def debit(
    state: WalletState,
    *,
    kind: str,
    amount: Decimal,
    source_id: str,
    at: datetime,
    policy: str = "allow_overdraft",
    reservation_id: str | None = None,
    event_id: str | None = None,
    reason: str | None = None,
    remember: bool = True,
) -> tuple[WalletState, list[LedgerEntry]]:
    """Usage or a manual consume: burn lots in order; beyond them, overdraft or refuse.

    A debit naming an open reservation settles it: the hold is released and the actual amount
    debited (the hold counts as available for that debit under the `reject` policy).
    """
    if amount < 0:
        raise WalletError(f"amount must be >= 0, got {amount}")
    if policy not in OVERDRAFT_POLICIES:
        raise WalletError(f"unknown unfunded policy {policy!r}; one of {', '.join(OVERDRAFT_POLICIES)}")
    reservations = tuple(r for r in state.reservations if r.reservation_id != reservation_id)
    released = replace(state, reservations=reservations)
    if policy == "reject" and amount > released.available:
        raise InsufficientCredits(f"{amount} credits needed, {released.available} available")
    remaining = amount
    grants = []
    burned_from = None
    for grant in sorted(released.grants, key=Grant.burn_order):
        take = min(grant.remaining, remaining)
        if take > 0:
            burned_from = burned_from or grant.grant_id
            remaining -= take
            grant = replace(grant, remaining=grant.remaining - take)
        if grant.remaining > 0:
            grants.append(grant)
    new = replace(released, grants=tuple(grants), overdraft=released.overdraft + remaining)
    entry = _entry(new, kind, -amount, source_id, at, event_id=event_id, grant_id=burned_from, reason=reason)
    return _record(new, source_id if remember else None), [entry]


def reserve(
    state: WalletState, *, reservation_id: str, amount: Decimal, expires_at: datetime, policy: str = "allow_overdraft"
) -> WalletState:
    """Hold credits for a pending call. Under `reject`, only what is available can be held."""
    _positive(amount)
    if any(r.reservation_id == reservation_id for r in state.reservations):
        return state  # a retried reserve command
    if policy == "reject" and amount > state.available:
        raise InsufficientCredits(f"cannot hold {amount} credits, {state.available} available")
    new = replace(state, reservations=state.reservations + (Reservation(reservation_id, amount, expires_at),))
    return _record(new, reservation_id)


def release(state: WalletState, *, reservation_id: str) -> WalletState:
    """Drop a hold (no ledger entry: a hold moves no money). Unknown ids are a no-op: the hold
    may already have been settled or have expired."""
    kept = tuple(r for r in state.reservations if r.reservation_id != reservation_id)
    return _record(replace(state, reservations=kept)) if len(kept) != len(state.reservations) else state


def expire(state: WalletState, *, now: datetime) -> tuple[WalletState, list[LedgerEntry]]:
    """Lapse lots and holds whose expiry has passed; each lapsed lot gets an `expiry` entry."""
    lapsed = [g for g in state.grants if g.expires_at is not None and g.expires_at <= now and g.remaining > 0]
    reservations = tuple(r for r in state.reservations if r.expires_at > now)
    if not lapsed and len(reservations) == len(state.reservations):
        return state, []
    current = replace(state, reservations=reservations)
    entries = []
    for grant in lapsed:
        current = replace(current, grants=tuple(g for g in current.grants if g.grant_id != grant.grant_id))
        entries.append(
            _entry(current, "expiry", -grant.remaining, f"expiry:{grant.grant_id}", now, grant_id=grant.grant_id)
        )
    return _record(current), entries


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


def _entry(state: WalletState, kind: str, amount: Decimal, source_id: str, at: datetime, **refs) -> LedgerEntry:
    is_event = refs.get("event_id") is not None
    return LedgerEntry(
        entry_id=entry_id(state.customer_id, source_id, state.wallet_id),
        customer_id=state.customer_id,
        wallet_id=state.wallet_id,
        kind=kind,
        amount=quantize(amount),
        balance_after=state.balance,
        occurred_at=at,
        command_id=None if is_event or kind == "expiry" else source_id,
        **refs,
    )


def _record(state: WalletState, source_id: str | None = None) -> WalletState:
    """Count the change (readers of wallet.balances keep the highest version) and remember
    the source id that caused it."""
    if source_id is None:
        return replace(state, version=state.version + 1)
    recent = (*state.recent_ids[-(RECENT_IDS - 1):], source_id)
    return replace(state, version=state.version + 1, recent_ids=recent)
