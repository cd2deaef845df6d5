"""WalletState ↔ bytes for the `wallets` table (its changelog topic is the wallet's durable state).

JSON (orjson) with amounts as decimal strings and times as RFC 3339: exact, readable when
debugging a changelog record, and small enough (a wallet holds a few lots and its recent ids).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import orjson

from openmonetize.billing.wallet import Grant, Reservation, WalletState


def dumps(state: WalletState) -> bytes:
    return orjson.dumps({
        "w": state.wallet_id,
        "c": state.customer_id,
        "g": [[g.grant_id, str(g.remaining), g.created_at.isoformat(),
               g.expires_at.isoformat() if g.expires_at else None, g.priority, g.kind,
               None if g.granted is None else str(g.granted)] for g in state.grants],
        "o": str(state.overdraft),
        "r": [[r.reservation_id, str(r.amount), r.expires_at.isoformat()] for r in state.reservations],
        "v": state.version,
        "i": list(state.recent_ids),
        "p": [list(p) for p in state.positions],
        "x": list(state.refused_ids),
    })


def loads(data: bytes) -> WalletState:
    raw = orjson.loads(data)
    return WalletState(
        wallet_id=raw["w"],
        customer_id=raw["c"],
        grants=tuple(_grant(*g) for g in raw["g"]),
        overdraft=Decimal(raw["o"]),
        reservations=tuple(Reservation(rid, Decimal(amt), datetime.fromisoformat(exp)) for rid, amt, exp in raw["r"]),
        version=raw["v"],
        recent_ids=tuple(raw["i"]),
        positions=tuple((p, o) for p, o in raw.get("p", ())),  # states stored before positions have none
        refused_ids=tuple(raw.get("x", ())),
    )


def _grant(gid, rem, created, exp, prio, kind="purchase", granted=None) -> Grant:
    """A stored lot; lots stored before kind and granted were recorded take the defaults."""
    return Grant(
        gid, Decimal(rem), datetime.fromisoformat(created), datetime.fromisoformat(exp) if exp else None, prio,
        kind, None if granted is None else Decimal(granted),
    )
