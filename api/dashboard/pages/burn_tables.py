"""Burn tables and their versions through the /v1/burn-tables routes, and the preview of a new
version against the last 30 days of usage (api/dashboard/reads.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import json
from decimal import Decimal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.dashboard import internal, reads
from api.dashboard.guard import form_session, session
from api.dashboard.rendering import field_error, render
from api.dashboard.sessions import Session
from api.errors import ApiError
from openmonetize.billing.burn_tables import BurnTable, RulesError, parse_rules

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("/burn-tables")
async def burn_tables(request: Request, s: Session = Depends(session)):
    return await _tables_page(request, s)


async def _tables_page(request: Request, s: Session, status: int = 200, **extra) -> HTMLResponse:
    answer = await internal.call(request, s, "GET", "/v1/burn-tables")
    return render(request, "burn_tables.html", s, status=status, tables=answer.body.get("burn_tables", []), **extra)


@router.post("/burn-tables")
async def create_table(request: Request, s: Session = Depends(form_session)):
    form = await request.form()
    rules, problem = _rules_from(form.get("rules"))
    if problem:
        return await _tables_page(request, s, 422, form_error=problem, form_values=dict(form))
    answer = await internal.call(request, s, "POST", "/v1/burn-tables", json={
        "name": str(form.get("name") or ""), "rules": _exact(rules)})
    if not answer.ok:
        return await _tables_page(request, s, answer.status, form_error=_rules_error(answer), form_values=dict(form))
    return RedirectResponse(f"/dashboard/burn-tables/{answer.body['burn_table_id']}", status_code=303)


@router.get("/burn-tables/{burn_table_id}")
async def burn_table(request: Request, burn_table_id: str, s: Session = Depends(session)):
    return await _table_page(request, s, burn_table_id)


async def _table_page(request: Request, s: Session, burn_table_id: str, status: int = 200, **extra):
    answer = await internal.call(request, s, "GET", f"/v1/burn-tables/{burn_table_id}")
    if not answer.ok:
        return render(request, "error.html", s, status=answer.status, error=answer.error)
    versions = answer.body["versions"]
    latest_rules = orjson.dumps(versions[-1]["rules"], option=orjson.OPT_INDENT_2).decode()
    extra.setdefault("form_values", {"rules": latest_rules})
    return render(request, "burn_table.html", s, status=status, table=answer.body, versions=versions,
                  rules_json=lambda r: orjson.dumps(r, option=orjson.OPT_INDENT_2).decode(), **extra)


@router.post("/burn-tables/{burn_table_id}/versions")
async def add_version(request: Request, burn_table_id: str, s: Session = Depends(form_session)):
    form = await request.form()
    rules, problem = _rules_from(form.get("rules"))
    if problem:
        return await _table_page(request, s, burn_table_id, 422, form_error=problem, form_values=dict(form))
    if form.get("action") == "preview":
        try:
            parsed = parse_rules(rules)
        except RulesError as exc:
            return await _table_page(request, s, burn_table_id, 422, form_values=dict(form), form_error={
                "field": f"rules.{exc.problems[0][0]}", "reason": str(exc)})
        now = datetime.now(timezone.utc)
        proposed = BurnTable(burn_table_id, s.customer_id, "proposed", 0, now, parsed)
        try:
            found = await reads.preview(request, s.customer_id, proposed, now)
        except ApiError as exc:  # ClickHouse or the catalog unavailable
            return await _table_page(request, s, burn_table_id, exc.status, form_values=dict(form),
                                     form_error={"field": "preview", "reason": exc.message, "code": exc.code})
        return await _table_page(request, s, burn_table_id, preview=found, form_values=dict(form))
    body = {"rules": _exact(rules)}
    if (effective := str(form.get("effective_from") or "").strip()):
        body["effective_from"] = effective if ("Z" in effective or "+" in effective) else effective + ":00Z"
    answer = await internal.call(request, s, "POST", f"/v1/burn-tables/{burn_table_id}/versions", json=body)
    if not answer.ok:
        return await _table_page(request, s, burn_table_id, answer.status, form_error=_rules_error(answer),
                                 form_values=dict(form))
    return await _table_page(request, s, burn_table_id, notice=f"Version {answer.body['version']} created.")


def _rules_from(text) -> tuple[dict | None, dict | None]:
    """The rules typed in the form, numbers read as Decimal (never float), or the problem."""
    try:
        rules = json.loads(str(text or ""), parse_float=Decimal)
    except ValueError as exc:
        return None, {"field": "rules", "reason": f"not JSON: {exc}"}
    if not isinstance(rules, dict):
        return None, {"field": "rules", "reason": "must be a JSON object: rule key -> rates"}
    return rules, None


def _exact(rules):
    """The rules for the JSON API: each Decimal as a decimal string (the API takes a rate as a
    number or a string, read exactly either way; a float would not be exact)."""
    if isinstance(rules, dict):
        return {key: _exact(value) for key, value in rules.items()}
    return format(rules, "f") if isinstance(rules, Decimal) else rules


def _rules_error(answer: internal.Answer) -> dict:
    error = field_error(answer)
    problems = answer.error.get("problems")
    if problems:
        error["problems"] = problems
    return error
