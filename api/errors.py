"""One error shape for the API: `{"error": {"code": ..., "message": ..., "field": ...}}`.

Routes raise `ApiError`; `install(app)` answers it, FastAPI's own request validation errors,
Starlette's HTTP errors (no route: 404, 405) and the stores' refusals (openmonetize/stores/
refusals.py: 422, 404, 409, as `ApiError`s, so the dashboard's handler of `ApiError` sees them
too) with that body. `field` is present only when one
field is to blame. Batch routes answer per-event problems in their own body
(`accepted`/`rejected`); this shape is for the request as a whole (401, 403, 413, 415, 503,
...). Routers with a protocol of their own (the schema registry speaks Confluent's error format)
handle their errors before these handlers see them.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmonetize.stores.refusals import Conflict, Invalid, NotFound, Refusal

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
# A store's refusal as an HTTP status; a Refusal of no subclass below is a 422.
_REFUSAL_STATUS = {Invalid: 422, NotFound: 404, Conflict: 409}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
        details: Mapping[str, object] | None = None,
    ):
        """`extra` adds top-level keys next to `error` (e.g. how many events were accepted);
        `details` adds keys inside it (e.g. every `problems` of a burn table's rules)."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        self.details = dict(details or {})

    def response(self) -> Response:
        body = {"error": {**error_body(self.code, self.message, self.field), **self.details}, **self.extra}
        return json_response(body, self.status, self.headers)


def json_response(body: object, status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_body(code: str, message: str, field: str | None = None) -> dict:
    body = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return body


def validation_error(exc: RequestValidationError) -> ApiError:
    """FastAPI's 422 in our shape: the first problem names the field, the message lists all."""
    problems = exc.errors()
    first = problems[0] if problems else {}
    field = ".".join(str(part) for part in first.get("loc", ())) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in problem.get('loc', ()))}: {problem.get('msg', 'invalid')}" for problem in problems
    )
    return ApiError(422, "invalid_request", message or "invalid request", field)


def refused(exc: Refusal) -> ApiError:
    """A store's refusal as the API's error: its code, message and field as they are."""
    status = next((status for kind, status in _REFUSAL_STATUS.items() if isinstance(exc, kind)), 422)
    return ApiError(status, exc.code, exc.message, exc.field)


def install(app: FastAPI) -> None:
    async def on_api_error(_request: Request, exc: ApiError) -> Response:
        return exc.response()

    async def on_refusal(request: Request, exc: Refusal) -> Response:
        """Answered by whatever handles `ApiError` when the request is served (the dashboard
        installs its own for its pages), looked up then, not now."""
        return await request.app.exception_handlers[ApiError](request, refused(exc))

    async def on_validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return validation_error(exc).response()

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own answers (no route matches: 404, 405) in our shape, not `{"detail"}`."""
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return ApiError(exc.status_code, code, message, headers=exc.headers).response()

    async def on_database_away(request: Request, exc: Exception) -> Response:
        """Postgres refusing connections, or the pool finding none in DATABASE_POOL_TIMEOUT_S: the
        client may retry, and hears so at once rather than as a 500 or a timeout of its own."""
        return database_unavailable(request.app.state.settings.ingest_retry_after_s, exc).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Refusal, on_refusal)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(psycopg.OperationalError, on_database_away)
    app.add_exception_handler(PoolTimeout, on_database_away)


def database_unavailable(retry_after_s: int, exc: Exception) -> ApiError:
    return ApiError(503, "database_unavailable", f"Postgres is not answering ({type(exc).__name__}); retry later",
                    headers={"Retry-After": str(retry_after_s)})
