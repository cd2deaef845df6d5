"""What the dashboard reads that the JSON API has no route for, from the stores the API and
the CLI already use: the tenant's wallets (the API's wallet.balances view), its rebilling runs
(openmonetize.stores.replay_runs), and last month's usage rows for a burn-table preview
(ClickHouse usage_events, rated with openmonetize.billing.rating)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from fastapi import Request

from api.catalog_state import catalog_of, in_db
from api.wallet_access import balances_of
from openmonetize.billing.burn_tables import BurnTable
from openmonetize.billing.money import ZERO
from openmonetize.billing.rating import NoRate, RateParams
from openmonetize.stores import replay_runs as runs
from openmonetize.wallet_balances import Balance

PREVIEW_DAYS = 30
PREVIEW_MAX_ROWS = 50_000


def wallets(request: Request, customer_id: str) -> list[Balance]:
    """The tenant's wallets as the balances view holds them now (lapsed grants removed), the
    customer's own wallet first, then by id."""
    now = datetime.now(timezone.utc)
    found = [b.as_of(now) for _, b in balances_of(request).view.items() if b is not None and b.customer_id == customer_id]
    return sorted(found, key=lambda b: (b.wallet_id.count(":"), b.wallet_id))


def wallet(request: Request, customer_id: str, wallet_id: str) -> Balance:
    found = balances_of(request).get(wallet_id)
    if found is None or found.customer_id != customer_id:
        found = Balance.empty(wallet_id, customer_id)
    return found.as_of(datetime.now(timezone.utc))


async def rebilling_runs(request: Request, customer_id: str, limit: int = 50) -> list[runs.Run]:
    return await in_db(request, runs.listed, customer_id, limit)


@dataclass(frozen=True)
class Preview:
    start: datetime
    end: datetime
    events: int
    current: Decimal  # credits under the versions in force at each event's time
    proposed: Decimal  # credits under the proposed rules
    unrateable_current: int
    unrateable_proposed: int
    truncated: bool

    @property
    def difference(self) -> Decimal:
        return self.proposed - self.current


_USAGE_SQL = """
SELECT event_type, timestamp, provider, model, input_tokens, output_tokens, cached_input_tokens, image_count,
       image_size, quality, unit_type, quantity
FROM {db}.usage_events FINAL
WHERE customer_id = {{customer_id:String}} AND timestamp >= {{start:DateTime64(6, 'UTC')}}
  AND timestamp < {{end:DateTime64(6, 'UTC')}}
LIMIT {{limit:UInt32}}
"""


async def preview(request: Request, customer_id: str, proposed: BurnTable, now: datetime | None = None) -> Preview:
    """What the last PREVIEW_DAYS of the tenant's usage cost in credits as rated (the version in
    force at each event) and what the proposed rules would have charged, event by event with
    the same rating code the worker runs."""
    end = now or datetime.now(timezone.utc)
    start = end - timedelta(days=PREVIEW_DAYS)
    clickhouse = request.app.state.clickhouse
    catalog = catalog_of(request)
    result = await clickhouse.query(
        _USAGE_SQL.format(db=clickhouse.database),
        {"customer_id": customer_id, "start": start, "end": end, "limit": PREVIEW_MAX_ROWS + 1},
    )
    rows = list(result.named_results())
    truncated = len(rows) > PREVIEW_MAX_ROWS
    rows = rows[:PREVIEW_MAX_ROWS]
    current = proposed_total = ZERO
    bad_current = bad_proposed = 0
    for row in rows:
        record = {k: (v if v != "" else None) for k, v in row.items()}
        if record["timestamp"].tzinfo is None:  # clickhouse-connect gives the UTC column's values naive
            record["timestamp"] = record["timestamp"].replace(tzinfo=timezone.utc)
        usage = RateParams.from_record(record)
        try:
            current += catalog.rate_event(customer_id, usage).result.credits
        except NoRate:
            bad_current += 1
        try:
            proposed_total += catalog.rate_event(customer_id, usage, lambda _in_force: proposed).result.credits
        except NoRate:
            bad_proposed += 1
    return Preview(start, end, len(rows), current, proposed_total, bad_current, bad_proposed, truncated)
