"""Usage reports from ClickHouse: `GET /v1/reports/usage`, for the API key's own tenant only.

Answered from the rollups usage_hourly and usage_daily (api/usage_reports.py says which and
why, and what the parameters accept); the rows and the totals are two queries run together.
docs/guides/reporting.md has the SQL behind this and the other reports.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request

from api import json_bodies, usage_reports
from api.auth import tenant
from api.clickhouse import ClickHouse
from api.usage_reports import DEFAULT_LIMIT, DIMENSIONS, GRANULARITIES, MAX_LIMIT, MAX_SPAN


@asynccontextmanager
async def lifespan(app):
    settings = app.state.settings
    app.state.clickhouse = ClickHouse(settings)
    try:
        yield
    finally:
        await app.state.clickhouse.close()


router = APIRouter(tags=["reports"], lifespan=lifespan)

_GROUP_BY = Query(None, examples=["user,feature,model"], description=f"Comma-separated dimensions, any of {list(DIMENSIONS)}; none: one row per bucket")
_FROM = Query(None, alias="from", examples=["2026-11-01T00:00:00Z", "2026-11-01"], description=(
    "Start, inclusive: ISO-8601 with a timezone (2026-11-01T00:00:00Z) or a date (midnight UTC); on a whole hour "
    "(hour, total) or midnight UTC (day). Default: 30 days before `to`"))
_TO = Query(None, alias="to", description=(
    "End, exclusive; same format and alignment as `from`. Default: the end of the current hour (hour) or day (day, total)"))
_GRANULARITY = Query(None, examples=list(GRANULARITIES), description=(
    f"Bucket size, one of {list(GRANULARITIES)} (total: no time bucket). Default: day. Widest range: "
    + ", ".join(f"{name} {span.days} days" for name, span in MAX_SPAN.items())))
_LIMIT = Query(None, description=f"Most rows returned, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}); `truncated` says if more matched")


@router.get(
    "/v1/reports/usage",
    summary="Usage, credits, cost, revenue and margin by time bucket and dimension, from ClickHouse",
    responses={
        200: json_bodies.content(
            "Rows in bucket then group order (buckets without usage are absent), and the totals of the whole range. "
            "Amounts are decimal strings; group keys are null where the events had none",
            json_bodies.schema(usage_reports.UsageReport),
        ),
        **json_bodies.errors(401, 422, 503, descriptions={
            422: "A parameter is invalid (`invalid_report_query`); `field` names it: group_by, from, to, granularity or limit",
            503: "ClickHouse does not answer (`reports_unavailable`); retry after `Retry-After`",
        }),
    },
)
async def usage(
    request: Request,
    group_by: str | None = _GROUP_BY,
    start: str | None = _FROM,
    end: str | None = _TO,
    granularity: str | None = _GRANULARITY,
    limit: str | None = _LIMIT,
    customer_id: str = Depends(tenant),
):
    query = usage_reports.parse(
        customer_id, group_by=group_by, start=start, end=end, granularity=granularity, limit=limit,
        now=datetime.now(timezone.utc),
    )
    clickhouse: ClickHouse = request.app.state.clickhouse
    rows, totals = await asyncio.gather(
        # With no GROUP BY (total, no group_by) an empty range gives no row rather than a row of zeros.
        clickhouse.query(*usage_reports.rows_sql(query, clickhouse.database),
                         settings={"empty_result_for_aggregation_by_empty_set": 1}),
        clickhouse.query(*usage_reports.totals_sql(query, clickhouse.database)),
    )
    return json_bodies.respond(usage_reports.report(query, list(rows.named_results()), totals.first_item))
