"""The wallet.commands record (schemas/avro/wallet_command.avsc), built in one place.

Every change to a wallet other than a usage debit is one of these records: top-ups and grants
(the credits routes, the plan scheduler), holds and their release (the entitlement routes),
rebilling adjustments. Each caller names what its command is; the fields it leaves out are null.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal


def wallet_command(
    command_id: str,
    customer_id: str,
    wallet_id: str,
    kind: str,
    amount: Decimal,
    requested_at: datetime,
    *,
    expires_at: datetime | None = None,
    priority: int | None = None,
    event_id: str | None = None,
    run_id: str | None = None,
    reservation_id: str | None = None,
    reason: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict:
    return {
        "command_id": command_id,
        "customer_id": customer_id,
        "wallet_id": wallet_id,
        "kind": kind,
        "amount": amount,
        "expires_at": expires_at,
        "priority": priority,
        "event_id": event_id,
        "run_id": run_id,
        "reservation_id": reservation_id,
        "reason": reason,
        "requested_at": requested_at,
        "metadata": metadata,
    }
