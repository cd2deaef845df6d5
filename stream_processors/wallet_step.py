"""The wallet agent's step, without Faust: one wallet's records in order → its new state and
what to emit (ledger entries, rated usage, DLQ records).

Two kinds of record reach a wallet, both keyed by wallet_id so one partition owns the wallet:
commands from `wallet.commands` (purchases, grants, adjustments, manual consumption, holds)
and rated usage events from `wallet.debits` (the usage agent's output, routed to this wallet).
A record whose id the wallet already applied (`WalletState.seen`) is skipped: that is a
re-delivery after a crash or rebalance, and applying it again would charge twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from openmonetize.billing.wallet import Grant, InsufficientCredits, LedgerEntry, OpenWallet, WalletError, WalletState
from schemas.dlq_reasons import Reason

# What the wallet agent reads of a rated usage record (here and in wallets.py): it decodes
# only these (codecs.Codecs.debit) and forwards the record's bytes unchanged.
DEBIT_FIELDS = ("event_id", "customer_id", "user_id", "reservation_id", "timestamp", "wallet_id", "credits",
                "source_partition", "source_offset")
CREDIT_KINDS = {"purchase": "purchase", "grant": "grant", "adjustment_credit": "adjustment"}
DEBIT_KINDS = {"consume": "consume", "adjustment_debit": "adjustment"}
HOLD_KINDS = ("reserve", "release")
COMMAND_KINDS = (*CREDIT_KINDS, *DEBIT_KINDS, *HOLD_KINDS)


@dataclass(frozen=True)
class Rejected:
    """A record the wallet refused: the DLQ reason and detail."""

    reason: str
    detail: str
    source_id: str


@dataclass
class StepResult:
    state: WalletState
    ledger: list[LedgerEntry] = field(default_factory=list)
    rated: list[dict] = field(default_factory=list)
    rejected: list[tuple[dict, Rejected]] = field(default_factory=list)
    applied_ids: list[str] = field(default_factory=list)  # command and event ids applied, in order
    duplicates: int = 0
    changed: bool = False


def apply_records(
    state: WalletState | None,
    wallet_id: str,
    records: list[tuple[str, dict]],
    *,
    policy: str,
    now: datetime,
) -> StepResult:
    """Apply ("command" | "debit", record) pairs of ONE wallet, in order.

    Lots whose expiry has passed lapse first (lazily: when the wallet is next touched). The
    state is opened once for the whole batch (`OpenWallet`) and closed into `result.state`.
    """
    customer_id = records[0][1]["customer_id"]
    opened = OpenWallet(state or WalletState(wallet_id, customer_id))
    lapsed = opened.expire(now=now)
    result = StepResult(state, ledger=lapsed, changed=bool(lapsed))
    for kind, record in records:
        source_id = record["command_id"] if kind == "command" else record["event_id"]
        position = _position(kind, record)
        if opened.seen_position(*position, source_id) if position else opened.seen(source_id):
            result.duplicates += 1
            continue
        try:
            if kind == "command":
                _apply_command(opened, result, record)
            else:
                _apply_debit(opened, result, record, policy, remember=position is None)
            result.applied_ids.append(source_id)
            if position:
                opened.at_position(*position, source_id, refused=False)
        except InsufficientCredits as exc:
            result.rejected.append((record, Rejected(Reason.INSUFFICIENT_CREDITS, str(exc), source_id)))
            if position:
                opened.at_position(*position, source_id, refused=True)
                result.changed = True
        except WalletError as exc:
            result.rejected.append((record, Rejected(Reason.INVALID_COMMAND, str(exc), source_id)))
    result.state = opened.close()
    return result


def _apply_command(opened: OpenWallet, result: StepResult, command: dict) -> None:
    kind, amount, at = command["kind"], command["amount"], command["requested_at"]
    source_id = command["command_id"]
    if kind in CREDIT_KINDS:
        result.ledger.append(opened.add_credits(
            kind=CREDIT_KINDS[kind], amount=amount, source_id=source_id, at=at,
            expires_at=command.get("expires_at"), priority=command.get("priority") or 0,
            event_id=command.get("event_id"), reason=command.get("reason"),
        ))
    elif kind in DEBIT_KINDS:
        result.ledger.append(opened.debit(
            kind=DEBIT_KINDS[kind], amount=amount, source_id=source_id, at=at,
            policy="reject" if kind == "consume" else "allow_overdraft",  # a manual consume never overdraws
            event_id=command.get("event_id"), reason=command.get("reason"),
        ))
    elif kind == "reserve":
        if command.get("expires_at") is None:
            raise WalletError("reserve: expires_at is required")
        opened.reserve(reservation_id=source_id, amount=amount, expires_at=command["expires_at"])
    elif kind == "release":
        if command.get("reservation_id") is None:
            raise WalletError("release: reservation_id is required")
        opened.release(reservation_id=command["reservation_id"])
    else:
        raise WalletError(f"unknown command kind {kind!r}; one of {', '.join(COMMAND_KINDS)}")
    result.changed = True


def _position(kind: str, record: dict) -> tuple[int, int] | None:
    """A debit's position in usage.events (set by the usage agent), by which a debit forwarded
    again is recognised; commands, and debits from elsewhere, are recognised by id."""
    if kind == "debit" and record.get("source_partition") is not None:
        return record["source_partition"], record["source_offset"]
    return None


def _apply_debit(opened: OpenWallet, result: StepResult, rated: dict, policy: str, remember: bool = True) -> None:
    result.ledger.append(opened.debit(
        kind="usage_debit", amount=rated["credits"], source_id=rated["event_id"], at=rated["timestamp"],
        policy=policy, reservation_id=rated.get("reservation_id"), event_id=rated["event_id"], remember=remember,
    ))
    result.rated.append(replace_wallet(rated, opened.wallet_id))
    result.changed = True


def replace_wallet(rated: dict, wallet_id: str) -> dict:
    return rated if rated.get("wallet_id") == wallet_id else {**rated, "wallet_id": wallet_id}


def balance_record(state: WalletState, now: datetime, applied_ids: Iterable[str] = ()) -> dict:
    """The wallet.balances value of a state. `applied_ids` are the command and event ids this
    change applied: an API request waiting for its command watches for its id there."""
    return {
        "wallet_id": state.wallet_id,
        "customer_id": state.customer_id,
        "balance": state.balance,
        "reserved": state.reserved,
        "available": state.available,
        "updated_at": now,
        "version": state.version,
        "grants": [
            {
                "id": g.grant_id,
                "kind": g.kind,
                "granted": g.remaining if g.granted is None else g.granted,
                "remaining": g.remaining,
                "expires_at": g.expires_at,
                "priority": g.priority,
                "granted_at": g.created_at,
            }
            for g in sorted(state.grants, key=Grant.burn_order)
        ],
        "applied_ids": list(applied_ids),
    }


def ledger_record(entry: LedgerEntry, now: datetime) -> dict:
    """The ledger.entries value of an entry."""
    return {
        "entry_id": entry.entry_id,
        "customer_id": entry.customer_id,
        "wallet_id": entry.wallet_id,
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "event_id": entry.event_id,
        "command_id": entry.command_id,
        "grant_id": entry.grant_id,
        "reason": entry.reason,
        "occurred_at": entry.occurred_at,
        "recorded_at": now,
        "metadata": None,
    }

