"""The dashboard's pages. Each acts as the signed-in key's tenant through our own JSON API
(api/dashboard/internal.py) or the stores it uses (api/dashboard/reads.py)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.dashboard import charts, dlq, internal, money_filters, reads, sessions
from api.dashboard.guard import form_session, session
from api.dashboard.sessions import Session
from openmonetize.billing.burn_tables import BurnTable, RulesError, parse_rules
from openmonetize.catalog import decimal_text

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
money_filters.install(templates.env)
USAGE_DIMENSIONS = ("user_id", "team_id", "feature_id", "model")
TOP_N = 5


def render(request: Request, name: str, s: Session | None, status: int = 200, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": s, "page": name.removesuffix(".html"), **context},
                                      status_code=status)


def total(values) -> str:
    return decimal_text(sum((Decimal(v) for v in values), Decimal(0)))


# --- sign-in ------------------------------------------------------------------------------------
@router.get("")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/overview", status_code=303)


@router.get("/signin")
async def signin_page(request: Request):
    return render(request, "signin.html", None)


@router.post("/signin")
async def signin(request: Request):
    form = await request.form()
    api_key = str(form.get("api_key") or "").strip()
    customer_id = None
    if api_key:
        customer_id = await request.app.state.api_keys.customer_for(api_key) if api_key.startswith("om_") else None
    if customer_id is None:
        error = {"field": "api_key", "reason": "enter an API key" if not api_key else "unknown or revoked API key"}
        return render(request, "signin.html", None, status=401, error=error)
    sealed = sessions.sealer_of(request).seal(sessions.new_session(api_key, customer_id))
    response = RedirectResponse("/dashboard/overview", status_code=303)
    response.set_cookie(value=sealed, **sessions.cookie_options(request))
    return response


@router.post("/signout")
async def signout(request: Request, s: Session = Depends(form_session)):
    response = RedirectResponse("/dashboard/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/dashboard")
    return response


# --- overview -----------------------------------------------------------------------------------
@router.get("/overview")
async def overview(request: Request, s: Session = Depends(session)):
    today = datetime.now(timezone.utc).date()
    start, end = (today - timedelta(days=29)).isoformat(), (today + timedelta(days=1)).isoformat()
    daily = await internal.call(request, s, "GET", "/v1/reports/usage",
                                params={"from": start, "to": end, "granularity": "day"})
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    hourly = await internal.call(request, s, "GET", "/v1/reports/usage", params={
        "from": (now - timedelta(hours=23)).isoformat(), "to": (now + timedelta(hours=1)).isoformat(),
        "granularity": "hour"})
    tops = {}
    for dimension in ("user", "feature", "model"):
        answer = await internal.call(request, s, "GET", "/v1/reports/usage", params={
            "from": start, "to": end, "granularity": "total", "group_by": dimension})
        rows = answer.body.get("rows", []) if answer.ok else []
        tops[dimension] = sorted(rows, key=lambda r: Decimal(r["credits"]), reverse=True)[:TOP_N]
    by_day = {r["bucket"][:10]: r["credits"] for r in daily.body.get("rows", [])} if daily.ok else {}
    days = [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    by_hour = {r["bucket"][:13]: r["credits"] for r in hourly.body.get("rows", [])} if hourly.ok else {}
    hours = [(now - timedelta(hours=23 - i)).isoformat()[:13] for i in range(24)]
    return render(
        request, "overview.html", s, wallets=reads.wallets(request, s.customer_id),
        totals=daily.body.get("totals") if daily.ok else None, error=None if daily.ok else daily.error,
        burn_daily=charts.bars([charts.Point(d, by_day.get(d, "0")) for d in days], "Credits burned per day", "credits"),
        burn_hourly=charts.bars([charts.Point(h.replace("T", " ") + "h", by_hour.get(h, "0")) for h in hours],
                                "Credits burned per hour", "credits"),
        tops=tops, start=start, end=end,
    )


# --- wallets and ledger -------------------------------------------------------------------------
@router.get("/wallets")
async def wallets(request: Request, wallet: str | None = None, cursor: str | None = None,
                  s: Session = Depends(session)):
    return await _wallets_page(request, s, wallet, cursor)


async def _wallets_page(request: Request, s: Session, wallet: str | None, cursor: str | None = None,
                        status: int = 200, **extra) -> HTMLResponse:
    ledger = await internal.call(request, s, "GET", f"/v1/customers/{s.customer_id}/ledger",
                                 params={"wallet_id": wallet, "cursor": cursor, "limit": "25"})
    return render(request, "wallets.html", s, status=status, wallets=reads.wallets(request, s.customer_id),
                  selected=wallet, ledger=ledger.body if ledger.ok else None,
                  ledger_error=None if ledger.ok else ledger.error, **extra)


@router.post("/wallets/credits")
async def add_credits(request: Request, s: Session = Depends(form_session)):
    form = await request.form()
    kind = form.get("kind")
    if kind not in ("purchase", "grant"):
        return await _wallets_page(request, s, None, status=422,
                                   form_error={"field": "kind", "reason": "must be purchase or grant"})
    body = {"customer_id": s.customer_id, "amount": str(form.get("amount") or "").strip()}
    for name in ("user_id", "team_id", "reason"):
        if (value := str(form.get(name) or "").strip()):
            body[name] = value
    if (expires := str(form.get("expires_at") or "").strip()):
        body["expires_at"] = expires if ("Z" in expires or "+" in expires) else expires + ":00Z"
    if (priority := str(form.get("priority") or "").strip()):
        body["priority"] = int(priority) if priority.isdigit() else priority
    headers = {"Idempotency-Key": str(form.get("idempotency_key"))} if form.get("idempotency_key") else None
    answer = await internal.call(request, s, "POST", f"/v1/credits/{kind}", params={"wait": "true"}, json=body,
                                 headers=headers)
    if not answer.ok:
        return await _wallets_page(request, s, None, status=answer.status, form_error=_field_error(answer),
                                   form_values=dict(form))
    return await _wallets_page(request, s, answer.body.get("wallet_id"), notice={
        "kind": kind, "status": answer.body.get("status"), "balance": answer.body.get("balance"),
        "wallet_id": answer.body.get("wallet_id")})


def _field_error(answer: internal.Answer) -> dict:
    error = answer.error
    field, reason = error.get("field") or "request", error.get("message", "")
    return {"field": field, "reason": reason.removeprefix(f"{field}: "), "code": error.get("code")}


# --- usage explorer -----------------------------------------------------------------------------
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
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    name = f"usage-{query['from']}-{query['to']}.csv".replace(":", "")
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- burn tables ----------------------------------------------------------------------------------
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
        "name": str(form.get("name") or ""), "rules": rules})
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
        found = await reads.preview(request, s.customer_id, proposed, now)
        return await _table_page(request, s, burn_table_id, preview=found, form_values=dict(form))
    body = {"rules": rules}
    if (effective := str(form.get("effective_from") or "").strip()):
        body["effective_from"] = effective if ("Z" in effective or "+" in effective) else effective + ":00Z"
    answer = await internal.call(request, s, "POST", f"/v1/burn-tables/{burn_table_id}/versions", json=body)
    if not answer.ok:
        return await _table_page(request, s, burn_table_id, answer.status, form_error=_rules_error(answer),
                                 form_values=dict(form))
    return await _table_page(request, s, burn_table_id, notice=f"Version {answer.body['version']} created.")


def _rules_from(text) -> tuple[dict | None, dict | None]:
    try:
        rules = orjson.loads(str(text or ""))
    except orjson.JSONDecodeError as exc:
        return None, {"field": "rules", "reason": f"not JSON: {exc}"}
    if not isinstance(rules, dict):
        return None, {"field": "rules", "reason": "must be a JSON object: rule key -> rates"}
    return rules, None


def _rules_error(answer: internal.Answer) -> dict:
    error = _field_error(answer)
    problems = answer.error.get("problems")
    if problems:
        error["problems"] = problems
    return error


# --- API keys -------------------------------------------------------------------------------------
@router.get("/api-keys")
async def api_keys(request: Request, s: Session = Depends(session)):
    return await _keys_page(request, s)


async def _keys_page(request: Request, s: Session, status: int = 200, **extra):
    answer = await internal.call(request, s, "GET", "/v1/api-keys")
    return render(request, "api_keys.html", s, status=status, keys=answer.body.get("api_keys", []),
                  current_prefix=s.api_key[:11], **extra)


@router.post("/api-keys")
async def create_key(request: Request, s: Session = Depends(form_session)):
    form = await request.form()
    answer = await internal.call(request, s, "POST", "/v1/api-keys", json={"name": str(form.get("name") or "default")})
    if not answer.ok:
        return await _keys_page(request, s, answer.status, form_error=_field_error(answer))
    response = await _keys_page(request, s, created=answer.body)
    response.headers["Cache-Control"] = "no-store"  # the secret is on this page only
    return response


@router.post("/api-keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, s: Session = Depends(form_session)):
    answer = await internal.call(request, s, "DELETE", f"/v1/api-keys/{key_id}")
    if not answer.ok:
        return await _keys_page(request, s, answer.status, form_error=_field_error(answer))
    if answer.body.get("prefix") == s.api_key[:11]:
        return RedirectResponse("/dashboard/signin", status_code=303)  # revoked the key of this very session
    return await _keys_page(request, s, notice=f"Key {answer.body['prefix']}… revoked.")


# --- rebilling ------------------------------------------------------------------------------------
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
        body["burn_table_version"] = int(version) if version.isdigit() else version
    answer = await internal.call(request, s, "POST", "/v1/rebilling/runs", json=body)
    if not answer.ok:
        return await _runs_page(request, s, answer.status, form_error=_field_error(answer), form_values=dict(form))
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


# --- DLQ --------------------------------------------------------------------------------------------
@router.get("/dlq")
async def dlq_page(request: Request, s: Session = Depends(session)):
    return await _dlq_page(request, s)


async def _dlq_page(request: Request, s: Session, status: int = 200, **extra):
    try:
        records, matched = await dlq.listed(request, s.customer_id)
    except Exception as exc:  # noqa: BLE001 - Kafka or Postgres unreachable: say so on the page
        return render(request, "dlq.html", s, status=503, records=[], matched=0,
                      error={"field": "dlq", "reason": f"the DLQ cannot be read right now ({type(exc).__name__}: {exc})"})
    return render(request, "dlq.html", s, status=status, records=records, matched=matched, **extra)


@router.post("/dlq/retry")
async def dlq_retry(request: Request, s: Session = Depends(form_session)):
    ids = [str(i) for i in (await request.form()).getlist("id")]
    if not ids:
        return await _dlq_page(request, s, 422, error={"field": "id", "reason": "select at least one record to retry"})
    return await _dlq_page(request, s, outcomes=await dlq.retry(request, s.customer_id, ids))
