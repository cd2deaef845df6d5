"""The DLQ page: the tenant's dead letters and their retry (api/dlq_access.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api import dlq_access as dlq
from api.dashboard.guard import form_session, session
from api.dashboard.rendering import render
from api.dashboard.sessions import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)


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
