"""API keys through the /v1/api-keys routes: list, create (the secret shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from api.dashboard import internal
from api.dashboard.guard import form_session, session
from api.dashboard.rendering import field_error, render
from api.dashboard.sessions import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)


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
        return await _keys_page(request, s, answer.status, form_error=field_error(answer))
    response = await _keys_page(request, s, created=answer.body)
    response.headers["Cache-Control"] = "no-store"  # the secret is on this page only
    return response


@router.post("/api-keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, s: Session = Depends(form_session)):
    answer = await internal.call(request, s, "DELETE", f"/v1/api-keys/{key_id}")
    if not answer.ok:
        return await _keys_page(request, s, answer.status, form_error=field_error(answer))
    if answer.body.get("prefix") == s.api_key[:11]:
        return RedirectResponse("/dashboard/signin", status_code=303)  # revoked the key of this very session
    return await _keys_page(request, s, notice=f"Key {answer.body['prefix']}… revoked.")
