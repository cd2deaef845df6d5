"""`--rebuild-analytics`: the re-rated figures into ClickHouse, and the rollups rebuilt.

`usage_events` is a ReplacingMergeTree(revision): a row written again with a higher revision
replaces the old one (exactly under FINAL, physically at the next merge). The run writes the
rows whose rating changed straight to ClickHouse (clickhouse-connect), as a copy of the stored
row with the new credits, cost, revenue, margin and versions and `revision + 1`: not through
usage.rated, so that the rollups can be rebuilt right after, with no sink in between to wait
for. The materialized views then hold old + new for those rows, so `rebuild_rollups` replaces
the hourly and daily rollups of the tenant's affected days with aggregates of
`usage_events FINAL` (the statements of docs/guides/reporting.md, "Rebuilding the rollups").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta

from openmonetize.billing.rating import RateResult
from sinks.usage_clickhouse import COLUMNS

_AMOUNTS = ("credits", "usd_cost", "revenue_usd", "margin_usd")
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
INSERT_BATCH = 50_000

_MEASURES = """count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens, sum(toUInt64(image_count)) AS image_count,
    sum(quantity) AS quantity, sum(credits) AS credits, sum(usd_cost) AS usd_cost,
    sum(revenue_usd) AS revenue_usd, sum(margin_usd) AS margin_usd"""
_FROM_EVENTS = """FROM {db}.usage_events FINAL
WHERE customer_id = {{customer_id:String}}
  AND timestamp >= {{from:DateTime64(6, 'UTC')}} AND timestamp < {{to:DateTime64(6, 'UTC')}}"""
_KEYS = "wallet_id, user_id, team_id, feature_id, provider, model, event_type"
REBUILD_STATEMENTS = (
    "DELETE FROM {db}.usage_hourly WHERE customer_id = {{customer_id:String}} "
    "AND hour >= {{from:DateTime('UTC')}} AND hour < {{to:DateTime('UTC')}}",
    f"INSERT INTO {{db}}.usage_hourly SELECT customer_id, toStartOfHour(timestamp) AS hour, {_KEYS}, {_MEASURES} "
    f"{_FROM_EVENTS} GROUP BY customer_id, hour, {_KEYS}",
    "DELETE FROM {db}.usage_daily WHERE customer_id = {{customer_id:String}} "
    "AND day >= toDate({{from:DateTime('UTC')}}) AND day < toDate({{to:DateTime('UTC')}})",
    f"INSERT INTO {{db}}.usage_daily SELECT customer_id, toDate(timestamp) AS day, {_KEYS}, {_MEASURES} "
    f"{_FROM_EVENTS} GROUP BY customer_id, day, {_KEYS}",
)


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) widened to UTC midnights: the daily rollup cannot be rebuilt for part of a day."""
    first = datetime.combine(start.date(), time(), start.tzinfo)
    last = datetime.combine(end.date(), time(), end.tzinfo)
    return first, last if last == end else last + timedelta(days=1)


def rebuild_rollups(client, database: str, customer_id: str, start: datetime, end: datetime) -> None:
    """Replace the tenant's hourly and daily rollups of the days [start, end) touch by aggregates
    of `usage_events FINAL`. Run it once the rows are written: an event inserted between a
    DELETE and its INSERT would be counted twice."""
    first, last = whole_days(start, end)
    params = {"customer_id": customer_id, "from": first, "to": last}
    for statement in REBUILD_STATEMENTS:
        client.command(statement.format(db=database), parameters=params)


def rewrite_events(client, database: str, customer_id: str, start: datetime, end: datetime,
                   ratings: Mapping[str, RateResult], rated_at: datetime) -> int:
    """Write again, at revision + 1, every stored row of `ratings`' events whose rating differs;
    returns how many rows were written."""
    if not ratings:
        return 0
    rows = client.query(
        f"SELECT {', '.join(COLUMNS)} {_FROM_EVENTS.format(db=database)}",
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
        client.insert("usage_events", changed[i:i + INSERT_BATCH], column_names=list(COLUMNS), database=database)
    return len(changed)


def _differs(row: tuple, result: RateResult) -> bool:
    return (any(row[_INDEX[name]] != getattr(result, name) for name in _AMOUNTS)
            or row[_INDEX["burn_table_id"]] != result.burn_table_id
            or row[_INDEX["burn_table_version"]] != result.burn_table_version
            or row[_INDEX["price_version"]] != (result.price_version or ""))
