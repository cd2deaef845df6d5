"""Rebilling runs: the tenant's runs (openmonetize.stores.replay_runs), a dry run or an apply through
POST /v1/rebilling/runs, a run through GET /v1/rebilling/runs/{id}."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from api.dashboard import internal, reads
from api.dashboard.guard import form_session, session
from api.dashboard.rendering import field_error, render
from api.dashboard.sessions import Session
from openmonetize.catalog.json_codec import decimal_text

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("/rebilling")
async def rebilling(request: Request, s: Session = Depends(session)):
    return await _runs_page(request, s)


async def _runs_page(request: Request, s: Session, status: int = 200, **extra):
    today = datetime.now(timezone.utc).date()
    extra.setdefault("form_values", {"from": (today - timedelta(days=7)).isoformat(),
                                     "to": (today + timedelta(days=1)).isoformat()})
    return render(request, "rebilling.html", s, status=status, runs=await reads.rebilling_runs(request, s.customer_id),
                  dec=decimal_text, **extra)


@router.post("/rebilling")
async def start_run(request: Request, s: Session = Depends(form_session)):
    form = await request.form()
    body = {"from": _instant(form.get("from")), "to": _instant(form.get("to")), "dry_run": form.get("mode") != "apply"}
    users = [u.strip() for u in str(form.get("user_ids") or "").split(",") if u.strip()]
    if users:
        body["user_ids"] = users
    if (version := str(form.get("burn_table_version") or "").strip()):
        body["burn_table_version"] = internal.json_int(version)
    answer = await internal.call(request, s, "POST", "/v1/rebilling/runs", json=body)
    if not answer.ok:
        return await _runs_page(request, s, answer.status, form_error=field_error(answer), form_values=dict(form))
    return RedirectResponse(f"/dashboard/rebilling/{answer.body['run_id']}", status_code=303)


@router.get("/rebilling/{run_id}")
async def run_page(request: Request, run_id: str, s: Session = Depends(session)):
    answer = await internal.call(request, s, "GET", f"/v1/rebilling/runs/{run_id}")
    if not answer.ok:
        return render(request, "error.html", s, status=answer.status, error=answer.error)
    return render(request, "run.html", s, run=answer.body)


def _instant(value) -> str:
    text = str(value or "").strip()
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc).isoformat()
    except ValueError:
        return text
