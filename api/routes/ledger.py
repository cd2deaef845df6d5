"""`GET /v1/customers/{id}/ledger`: a tenant's ledger entries, newest first, in pages.

Read from Postgres `ledger_entries`, so an entry appears once the ledger sink wrote it (about a
second after the wallet agent applied it). Filters: one wallet (`wallet_id`, or the wallet of
`user_id` or `team_id`), `kind`, and occurred_at in [`from`, `to`). Pages: `limit` entries
(default 100, at most 1000) and an opaque `next_cursor` to pass back as `cursor`, null on the
last page. Amounts are decimal strings.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from fastapi import APIRouter, Depends, Query, Request

from api import cursors, json_bodies
from api.auth import tenant
from api.catalog_state import in_db
from api.errors import ApiError
from openmonetize import wallet_ids
from openmonetize.catalog.json_codec import decimal_text
from openmonetize.stores import ledger_reads
from openmonetize.stores.ledger_reads import KINDS, LedgerFilter

router = APIRouter(tags=["credits"])
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class EntryOut(msgspec.Struct):
    entry_id: str
    wallet_id: str
    kind: str
    amount: str  # signed: negative takes from the wallet
    balance_after: str
    event_id: str | None
    command_id: str | None
    grant_id: str | None
    reservation_id: str | None
    burn_table_version: int | None
    reason: str | None
    metadata: dict | None
    occurred_at: datetime
    applied_at: datetime


class LedgerOut(msgspec.Struct):
    customer_id: str
    entries: list[EntryOut]
    next_cursor: str | None  # null: no further page


@router.get(
    "/v1/customers/{customer_id}/ledger",
    summary="The tenant's ledger entries, newest first, paged (from Postgres)",
    responses={
        200: json_bodies.content("A page of entries", json_bodies.schema(LedgerOut)),
        **json_bodies.errors(401, 403, 422, descriptions={
            422: "A filter or the cursor is invalid (`invalid_request`, `invalid_cursor`); `field` names it",
        }),
    },
)
async def ledger(
    request: Request,
    customer_id: str,
    wallet_id: str | None = Query(None, min_length=1, max_length=300, description="One wallet's entries"),
    user_id: str | None = Query(None, min_length=1, max_length=128, description="The entries of a user's wallet"),
    team_id: str | None = Query(None, min_length=1, max_length=128, description="The entries of a team's wallet"),
    kind: str | None = Query(None, description=f"One kind of entry: {', '.join(KINDS)}"),
    since: datetime | None = Query(None, alias="from", description="occurred_at at or after (RFC 3339, with a timezone)"),
    until: datetime | None = Query(None, alias="to", description="occurred_at before (RFC 3339, with a timezone)"),
    cursor: str | None = Query(None, max_length=1000, description="next_cursor of the previous page"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Entries per page"),
    caller: str = Depends(tenant),
):
    json_bodies.check_customer(customer_id, caller)
    if sum(value is not None for value in (wallet_id, user_id, team_id)) > 1:
        raise ApiError(422, "invalid_request", "give at most one of wallet_id, user_id and team_id", "wallet_id")
    if kind is not None and kind not in KINDS:
        raise ApiError(422, "invalid_request", f"kind must be one of {list(KINDS)}", "kind")
    for field, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise ApiError(422, "invalid_request", "must carry a timezone (RFC 3339, e.g. 2026-11-26T12:00:00Z)", field)
    if user_id is not None or team_id is not None:
        wallet_id = wallet_ids.wallet_for(caller, user_id, team_id)
    after = None
    if cursor is not None:
        at, entry_id = cursors.decode(cursor, 2)
        try:
            after = (datetime.fromisoformat(at), entry_id)
        except ValueError:
            raise ApiError(422, "invalid_cursor", "cursor: not a cursor this API returned", "cursor") from None
    where = LedgerFilter(caller, wallet_id, kind, since, until)
    found = await in_db(request, ledger_reads.page, where, after, limit + 1)  # one more: is there a next page?
    entries = found[:limit]
    next_cursor = None
    if len(found) > limit:
        next_cursor = cursors.encode(entries[-1].occurred_at.isoformat(), entries[-1].entry_id)
    return json_bodies.respond(LedgerOut(caller, [_out(e) for e in entries], next_cursor))


def _out(e: ledger_reads.Entry) -> EntryOut:
    return EntryOut(
        e.entry_id, e.wallet_id, e.kind, decimal_text(e.amount), decimal_text(e.balance_after), e.event_id,
        e.command_id, e.grant_id, e.reservation_id, e.burn_table_version, e.reason, e.metadata, e.occurred_at,
        e.applied_at,
    )
