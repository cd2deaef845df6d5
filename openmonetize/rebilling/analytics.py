"""`--rebuild-analytics`: the re-rated figures into ClickHouse (the rollups are then rebuilt by
openmonetize/analytics/rollups.py `rebuild`).

`usage_events` is a ReplacingMergeTree(revision): a row written again with a higher revision
replaces the old one (exactly under FINAL, physically at the next merge). The run writes the
rows whose rating changed straight to ClickHouse (clickhouse-connect), as a copy of the stored
row with the new credits, cost, revenue, margin and versions and `revision + 1`: not through
usage.rated, so that the rollups can be rebuilt right after, with no sink in between to wait
for. The materialized views then hold old + new for those rows, so `rollups.rebuild` replaces
the hourly and daily rollups of the tenant's affected days with aggregates of
`usage_events FINAL` (the statements of docs/guides/reporting.md, "Rebuilding the rollups").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from openmonetize.analytics import usage_events
from openmonetize.analytics.usage_events import COLUMNS, FINAL_IN_RANGE
from openmonetize.billing.rating import RateResult

_AMOUNTS = ("credits", "usd_cost", "revenue_usd", "margin_usd")
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
INSERT_BATCH = 50_000

def rewrite_events(client, database: str, customer_id: str, start: datetime, end: datetime,
                   ratings: Mapping[str, RateResult], rated_at: datetime) -> int:
    """Write again, at revision + 1, every stored row of `ratings`' events whose rating differs;
    returns how many rows were written."""
    if not ratings:
        return 0
    rows = client.query(
        f"SELECT {', '.join(COLUMNS)} {FINAL_IN_RANGE.format(db=database)}",
        parameters={"customer_id": customer_id, "from": start, "to": end}).result_rows
    changed = []
    for row in rows:
        result = ratings.get(row[_INDEX["event_id"]])
        if result is None or not _differs(row, result):
            continue
        new = list(row)
        for name in _AMOUNTS:
            new[_INDEX[name]] = getattr(result, name)
        new[_INDEX["burn_table_id"]] = result.burn_table_id
        new[_INDEX["burn_table_version"]] = result.burn_table_version
        new[_INDEX["price_version"]] = result.price_version or ""
        new[_INDEX["rated_at"]] = rated_at
        new[_INDEX["revision"]] = row[_INDEX["revision"]] + 1
        changed.append(new)
    for i in range(0, len(changed), INSERT_BATCH):
        usage_events.insert(client, database, changed[i:i + INSERT_BATCH])
    return len(changed)


def _differs(row: tuple, result: RateResult) -> bool:
    return (any(row[_INDEX[name]] != getattr(result, name) for name in _AMOUNTS)
            or row[_INDEX["burn_table_id"]] != result.burn_table_id
            or row[_INDEX["burn_table_version"]] != result.burn_table_version
            or row[_INDEX["price_version"]] != (result.price_version or ""))
