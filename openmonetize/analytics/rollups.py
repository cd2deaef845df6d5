"""The hourly and daily rollups of `usage_events` (`usage_hourly`, `usage_daily`), and how a
replay rebuilds them.

Their one definition is the materialized views of the ClickHouse migrations (the latest
migration that creates a view wins): the views fill the rollups as rows are inserted, and a
replay that re-rated events replaces the rollups of the days it touched with the SAME SELECT run
over `usage_events FINAL` for the tenant and range (`REBUILD_STATEMENTS`). docs/guides/reporting.md
shows these statements ("Rebuilding the rollups"); tests/unit/openmonetize/analytics/ keeps it
equal to them.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from pathlib import Path

from openmonetize.analytics.usage_events import FINAL_IN_RANGE

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations" / "clickhouse"
_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS \{database\}\.(\w+)_mv TO \{database\}\.\1 AS\s+"
    r"SELECT\s+(.*?)\s+FROM \{database\}\.usage_events\s+GROUP BY\s+(.*?);",
    re.S,
)
# The rows of a rollup a range [from, to) of whole days covers, by its time column.
_RANGE = {
    "usage_hourly": "hour >= {{from:DateTime('UTC')}} AND hour < {{to:DateTime('UTC')}}",
    "usage_daily": "day >= toDate({{from:DateTime('UTC')}}) AND day < toDate({{to:DateTime('UTC')}})",
}


def views() -> dict[str, tuple[str, str]]:
    """Each rollup table → (the SELECT list, the GROUP BY list) of its materialized view."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(MIGRATIONS.glob("*.sql")):
        for table, select, group_by in _VIEW.findall(path.read_text()):
            found[table] = (" ".join(select.split()), " ".join(group_by.split()))
    return found


def rebuild_statements() -> tuple[str, ...]:
    """Per rollup, hourly first: delete the tenant's rows of the range, insert its view's SELECT
    over `usage_events FINAL`. Format with `db`; parameters customer_id, from, to."""
    defined = views()
    statements = []
    for table in ("usage_hourly", "usage_daily"):
        select, group_by = defined[table]
        statements.append(f"DELETE FROM {{db}}.{table} WHERE customer_id = {{{{customer_id:String}}}} AND {_RANGE[table]}")
        statements.append(f"INSERT INTO {{db}}.{table} SELECT {select} {FINAL_IN_RANGE} GROUP BY {group_by}")
    return tuple(statements)


REBUILD_STATEMENTS = rebuild_statements()


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) widened to UTC midnights: the daily rollup cannot be rebuilt for part of a day."""
    first = datetime.combine(start.date(), time(), start.tzinfo)
    last = datetime.combine(end.date(), time(), end.tzinfo)
    return first, last if last == end else last + timedelta(days=1)


def rebuild(client, database: str, customer_id: str, start: datetime, end: datetime) -> None:
    """Replace the tenant's hourly and daily rollups of the days [start, end) touch by aggregates
    of `usage_events FINAL`. Run it once the rows are written: an event inserted between a
    DELETE and its INSERT would be counted twice."""
    first, last = whole_days(start, end)
    params = {"customer_id": customer_id, "from": first, "to": last}
    for statement in REBUILD_STATEMENTS:
        client.command(statement.format(db=database), parameters=params)
