"""Sign-in with an API key (a POST form; the key never in a URL) and sign-out: the session
cookie of api/dashboard/sessions.py."""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from api.auth import KeyGuessing, client_address
from api.dashboard import sessions
from api.dashboard.guard import CsrfRefused, form_session, same_origin
from api.dashboard.rendering import render
from api.dashboard.sessions import Session
from openmonetize.stores import tenants

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/overview", status_code=303)


@router.get("/signin")
async def signin_page(request: Request):
    return render(request, "signin.html", None)


@router.post("/signin")
async def signin(request: Request):
    if not same_origin(request):
        raise CsrfRefused()
    form = await request.form()
    api_key = str(form.get("api_key") or "").strip()
    customer_id = None
    if api_key.startswith(tenants.KEY_PREFIX):
        try:
            customer_id = await request.app.state.api_keys.customer_for(api_key, client_address(request))
        except KeyGuessing as exc:
            error = {"field": "api_key", "reason": f"too many unknown API keys from this address; retry in "
                                                   f"{max(1, math.ceil(exc.wait_s))} s"}
            return render(request, "signin.html", None, status=429, error=error)
        except Exception as exc:  # noqa: BLE001 - Postgres down: say so, it is not the key's fault
            error = {"field": "api_key", "reason": f"API keys cannot be checked right now ({type(exc).__name__}); retry shortly"}
            return render(request, "signin.html", None, status=503, error=error)
    if customer_id is None:
        error = {"field": "api_key", "reason": "enter an API key" if not api_key else "unknown or revoked API key"}
        return render(request, "signin.html", None, status=401, error=error)
    sealed = sessions.sealer_of(request).seal(sessions.new_session(api_key, customer_id))
    response = RedirectResponse("/dashboard/overview", status_code=303)
    response.set_cookie(value=sealed, **sessions.cookie_options(request))
    return response


@router.post("/signout")
async def signout(request: Request, s: Session = Depends(form_session)):
    await sessions.sign_out(request, s)  # the cookie's copies are refused too, not just this browser's
    response = RedirectResponse("/dashboard/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/dashboard")
    return response
