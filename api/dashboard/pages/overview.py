"""The overview: credits remaining per wallet, burn per hour and per day (inline SVG), cost vs
revenue and margin, top users, features and models; from the balances view and the usage report."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from fastapi import APIRouter, Depends, Request

from api.dashboard import charts, internal, reads
from api.dashboard.guard import session
from api.dashboard.rendering import render
from api.dashboard.sessions import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)
TOP_N = 5


@router.get("/overview")
async def overview(request: Request, s: Session = Depends(session)):
    today = datetime.now(timezone.utc).date()
    start, end = (today - timedelta(days=29)).isoformat(), (today + timedelta(days=1)).isoformat()
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    report = "/v1/reports/usage"
    dimensions = ("user", "feature", "model")
    daily, hourly, *top_answers = await asyncio.gather(  # five reports, asked together
        internal.call(request, s, "GET", report, params={"from": start, "to": end, "granularity": "day"}),
        internal.call(request, s, "GET", report, params={
            "from": (now - timedelta(hours=23)).isoformat(), "to": (now + timedelta(hours=1)).isoformat(),
            "granularity": "hour"}),
        *(internal.call(request, s, "GET", report, params={
            "from": start, "to": end, "granularity": "total", "group_by": dimension}) for dimension in dimensions),
    )
    tops = {
        dimension: sorted(answer.body.get("rows", []) if answer.ok else [], key=lambda r: Decimal(r["credits"]),
                          reverse=True)[:TOP_N]
        for dimension, answer in zip(dimensions, top_answers)
    }
    daily_rows = {r["bucket"][:10]: r for r in daily.body.get("rows", [])} if daily.ok else {}
    by_day = {day: r["credits"] for day, r in daily_rows.items()}
    days = [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    by_hour = {r["bucket"][:13]: r["credits"] for r in hourly.body.get("rows", [])} if hourly.ok else {}
    hours = [(now - timedelta(hours=23 - i)).isoformat()[:13] for i in range(24)]
    return render(
        request, "overview.html", s, wallets=reads.wallets(request, s.customer_id),
        totals=daily.body.get("totals") if daily.ok else None, error=None if daily.ok else daily.error,
        burn_daily=charts.bars([charts.Point(d, by_day.get(d, "0")) for d in days], "Credits burned per day", "credits"),
        burn_hourly=charts.bars([charts.Point(h.replace("T", " ") + "h", by_hour.get(h, "0")) for h in hours],
                                "Credits burned per hour", "credits"),
        cost_revenue=charts.grouped_bars(
            [charts.Group(d, (daily_rows[d]["usd_cost"], daily_rows[d]["revenue_usd"]) if d in daily_rows else ("0", "0"))
             for d in days], ("provider cost", "revenue"), "Cost vs revenue per day", "USD"),
        tops=tops, start=start, end=end,
    )
