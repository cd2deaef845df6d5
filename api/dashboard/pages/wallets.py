"""Wallets and the ledger: balances and grants from the balances view, the ledger through
GET /v1/customers/{id}/ledger, purchase and grant forms through POST /v1/credits/purchase|grant."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from api.dashboard import internal, reads
from api.dashboard.guard import form_session, session
from api.dashboard.rendering import field_error, render
from api.dashboard.sessions import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)


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
        body["priority"] = internal.json_int(priority)
    headers = {"Idempotency-Key": str(form.get("idempotency_key"))} if form.get("idempotency_key") else None
    answer = await internal.call(request, s, "POST", f"/v1/credits/{kind}", params={"wait": "true"}, json=body,
                                 headers=headers)
    if not answer.ok:
        return await _wallets_page(request, s, None, status=answer.status, form_error=field_error(answer),
                                   form_values=dict(form))
    return await _wallets_page(request, s, answer.body.get("wallet_id"), notice={
        "kind": kind, "status": answer.body.get("status"), "balance": answer.body.get("balance"),
        "wallet_id": answer.body.get("wallet_id")})
