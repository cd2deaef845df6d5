"""The usage explorer and its CSV export: GET /v1/reports/usage grouped by user, team, feature and
model over a period, filtered here (the route groups, it does not filter).

The CSV's ids come from whoever sent the events, and a spreadsheet runs a cell that begins with
`=`, `+`, `-` or `@` (or a tab or CR before one) as a formula: `=HYPERLINK(...)` as a user id
would become a link in the reader's sheet. Such a cell is written with a leading single quote
(OWASP's advice against CSV injection), unless it is a plain number (`-1.5` stays a number).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.dashboard import internal
from api.dashboard.guard import session
from api.dashboard.rendering import render, total
from api.dashboard.sessions import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)
USAGE_DIMENSIONS = ("user_id", "team_id", "feature_id", "model")


def _usage_query(request: Request) -> dict:
    q = request.query_params
    today = datetime.now(timezone.utc).date()
    return {
        "from": q.get("from") or (today - timedelta(days=29)).isoformat(),
        "to": q.get("to") or (today + timedelta(days=1)).isoformat(),
        **{d: q.get(d, "").strip() for d in USAGE_DIMENSIONS},
    }


async def _usage_rows(request: Request, s: Session, query: dict) -> tuple[list[dict], internal.Answer]:
    """The report grouped by every filterable dimension over the period, then filtered here (the
    report route groups but does not filter)."""
    answer = await internal.call(request, s, "GET", "/v1/reports/usage", params={
        "from": query["from"], "to": query["to"], "granularity": "total", "group_by": "user,team,feature,model",
        "limit": "10000"})
    rows = answer.body.get("rows", []) if answer.ok else []
    wanted = {d: query[d] for d in USAGE_DIMENSIONS if query[d]}
    rows = [r for r in rows if all((r.get(d) or "") == v for d, v in wanted.items())]
    return rows, answer


@router.get("/usage")
async def usage(request: Request, s: Session = Depends(session)):
    query = _usage_query(request)
    rows, answer = await _usage_rows(request, s, query)
    sums = {m: total(r[m] for r in rows) for m in ("credits", "usd_cost", "revenue_usd", "margin_usd")}
    return render(request, "usage.html", s, status=200 if answer.ok else answer.status, query=query, rows=rows,
                  sums=sums, events=sum(r["events"] for r in rows), truncated=answer.body.get("truncated"),
                  error=None if answer.ok else answer.error)


CSV_COLUMNS = ("user_id", "team_id", "feature_id", "model", "events", "input_tokens", "output_tokens",
               "cached_input_tokens", "image_count", "quantity", "credits", "usd_cost", "revenue_usd", "margin_usd")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: object) -> object:
    """A value as a CSV cell a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


@router.get("/usage.csv")
async def usage_csv(request: Request, s: Session = Depends(session)):
    query = _usage_query(request)
    rows, answer = await _usage_rows(request, s, query)
    if not answer.ok:
        return Response(f"{answer.error.get('field', '')}: {answer.error.get('message')}\n", answer.status,
                        media_type="text/plain")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in CSV_COLUMNS])
    name = f"usage-{query['from']}-{query['to']}.csv".replace(":", "")
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
