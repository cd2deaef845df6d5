"""Who may see a dashboard page: a live session (api/dashboard/sessions.py), and for every form
a CSRF token that matches the session's."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import HTMLResponse, RedirectResponse

from api.dashboard import sessions
from api.dashboard.rendering import SECURITY_HEADERS, render
from api.errors import ApiError
from api.dashboard.sessions import Session


class SignInRequired(Exception):
    """No session, an expired one, or its key was revoked: back to the sign-in page."""


class CsrfRefused(Exception):
    """A form without the session's CSRF token."""


class KeysUnavailable(Exception):
    """API keys cannot be checked now (Postgres down)."""


async def session(request: Request) -> Session:
    """FastAPI dependency: the page's session, or SignInRequired."""
    try:
        found = await sessions.current(request)
    except Exception as exc:  # noqa: BLE001 - Postgres down or the pool exhausted: not the user's fault
        raise KeysUnavailable(type(exc).__name__) from exc
    if found is None:
        raise SignInRequired()
    return found


def same_origin(request: Request) -> bool:
    """A browser's POST names its page's origin; one from another site is refused (the CSRF token
    is the main defence; this also covers the sign-in form, which has no session yet)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or one that does not say: the CSRF token decides
    return urlsplit(origin).netloc == request.headers.get("host")  # "null" (an opaque origin) never matches


async def form_session(request: Request) -> Session:
    """FastAPI dependency for POSTs: the session, and its CSRF token in the form."""
    found = await session(request)
    if not same_origin(request):
        raise CsrfRefused()
    form = await request.form()
    if not sessions.csrf_ok(found, form.get("csrf_token")):
        raise CsrfRefused()
    return found


def install(app) -> None:
    """The dashboard's answers to its own exceptions, and an HTML page instead of the API's JSON
    error for an ApiError or HTTP error raised while serving a /dashboard path (e.g. the balances
    view not loaded yet: 503); every other path keeps the API's handlers (installed before)."""
    api_error, http_error = app.exception_handlers[ApiError], app.exception_handlers[StarletteHTTPException]

    def page(request: Request, status: int, error: dict, headers=None) -> HTMLResponse:
        response = render(request, "error.html", None, status=status, error=error)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        if not request.url.path.startswith("/dashboard"):
            return await api_error(request, exc)
        return page(request, exc.status, {"code": exc.code, "message": exc.message, "field": exc.field}, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if not request.url.path.startswith("/dashboard"):
            return await http_error(request, exc)
        message = f"no page {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return page(request, exc.status_code, {"code": f"http_{exc.status_code}", "message": message}, exc.headers)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired):
        response = RedirectResponse("/dashboard/signin", status_code=303)
        if request.cookies.get(sessions.COOKIE):
            response.delete_cookie(sessions.COOKIE, path="/dashboard")
        return response

    @app.exception_handler(CsrfRefused)
    async def _csrf(_request: Request, _exc: CsrfRefused):
        return HTMLResponse(
            "<h1>Form refused</h1><p>csrf_token: missing or not this session's, or the form was posted from another "
            "site. Reload the page and submit again.</p>"
            '<p><a href="/dashboard/overview">Back to the dashboard</a></p>', status_code=403, headers=SECURITY_HEADERS)

    @app.exception_handler(KeysUnavailable)
    async def _unavailable(_request: Request, exc: KeysUnavailable):
        return HTMLResponse(f"<h1>Unavailable</h1><p>API keys cannot be checked right now ({exc}); retry shortly.</p>",
                            status_code=503, headers={"Retry-After": "2", **SECURITY_HEADERS})
