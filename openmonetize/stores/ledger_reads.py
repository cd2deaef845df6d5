"""Pages of a tenant's ledger from Postgres `ledger_entries` (written by the ledger sink from
ledger.entries), newest first: the store behind `GET /v1/customers/{id}/ledger`.

Order is (occurred_at, entry_id) descending, and a page continues strictly after the previous
page's last row, so paging never repeats nor skips an entry that was there when paging began.
An entry the sink writes later with an older occurred_at (a late event) appears only in pages
not read yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg

# The kinds the wallet agent writes (schemas/avro/ledger_entry.avsc documents them).
KINDS = ("usage_debit", "purchase", "grant", "consume", "adjustment", "expiry", "refund")


@dataclass(frozen=True)
class LedgerFilter:
    customer_id: str
    wallet_id: str | None = None
    kind: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True)
class Entry:
    entry_id: str
    wallet_id: str
    kind: str
    amount: Decimal
    balance_after: Decimal
    event_id: str | None
    command_id: str | None
    grant_id: str | None
    reservation_id: str | None
    burn_table_version: int | None
    reason: str | None
    metadata: dict | None
    occurred_at: datetime
    applied_at: datetime


_COLUMNS = (
    "entry_id, wallet_id, kind, amount, balance_after, event_id, command_id, grant_id, reservation_id, "
    "burn_table_version, reason, metadata, occurred_at, applied_at"
)


def page(conn: psycopg.Connection, where: LedgerFilter, after: tuple[datetime, str] | None, limit: int) -> list[Entry]:
    """Up to `limit` entries, newest first, from the one after `after` (occurred_at, entry_id)."""
    clauses, params = ["customer_id = %s"], [where.customer_id]
    for clause, value in (
        ("wallet_id = %s", where.wallet_id), ("kind = %s", where.kind),
        ("occurred_at >= %s", where.since), ("occurred_at < %s", where.until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if after is not None:
        # Spelled out rather than as a row comparison so that the (…, occurred_at) indexes apply.
        clauses.append("occurred_at <= %s AND (occurred_at < %s OR entry_id < %s)")
        params += [after[0], after[0], after[1]]
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM ledger_entries WHERE {' AND '.join(clauses)} "
        "ORDER BY occurred_at DESC, entry_id DESC LIMIT %s",
        [*params, limit],
    ).fetchall()
    return [Entry(*row) for row in rows]
