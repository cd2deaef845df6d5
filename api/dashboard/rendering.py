"""What every dashboard page shares: the templates (with the amount and time filters), rendering
a page for a session, and turning a JSON API error into a form's `field: reason`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.dashboard import internal, money_filters
from api.dashboard.sessions import Session
from openmonetize.catalog.json_codec import decimal_text

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
money_filters.install(templates.env)


# Our pages load only our own assets, are never framed, and post only to us.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
                               "base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # tenant data, and a freshly created key's secret
}


def render(request: Request, name: str, s: Session | None, status: int = 200, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": s, "page": name.removesuffix(".html"), **context},
                                      status_code=status, headers=SECURITY_HEADERS)


def total(values) -> str:
    """The exact sum of decimal strings, as a decimal string."""
    return decimal_text(sum((Decimal(v) for v in values), Decimal(0)))


def field_error(answer: internal.Answer) -> dict:
    error = answer.error
    field, reason = error.get("field") or "request", error.get("message", "")
    return {"field": field, "reason": reason.removeprefix(f"{field}: "), "code": error.get("code")}
