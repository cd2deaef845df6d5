"""Paths and query strings no store can hold are refused before any route sees them.

A NUL in a path id (`/v1/plans/p%00`), a query value (`?user_id=a%00`) or anything decoded
from them reached Postgres on about twenty routes and came back as a 500. No route takes a
control character in its path or a query value (ids, cursors, dates, formats), so this ASGI
middleware answers 400 for any, naming the parameter (schemas/storable.py has the rules), and
for percent-encoded bytes that are not UTF-8.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from api.errors import ApiError
from schemas.storable import CONTROL, ID_RULE


class UrlChecks:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = problem(scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b""))
            if refusal is not None:
                return await refusal.response()(scope, receive, send)
        return await self.app(scope, receive, send)


def problem(raw_path: bytes, query: bytes) -> ApiError | None:
    """The 400 for this path and query string, or None."""
    path = _text(unquote_to_bytes(raw_path))
    if path is None:
        return ApiError(400, "invalid_path", "the path is not valid UTF-8 once percent-decoded")
    if CONTROL.search(path):
        return ApiError(400, "invalid_path", f"the path {ID_RULE}")
    if not query:
        return None
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        name_text, value_text = _decoded(name), _decoded(value)
        field = name_text if name_text is not None and not CONTROL.search(name_text) else None
        if field is None:
            return ApiError(400, "invalid_query", f"a query parameter's name is not valid UTF-8 or {ID_RULE}")
        if value_text is None:
            return ApiError(400, "invalid_query", f"{field}: not valid UTF-8 once percent-decoded", field)
        if CONTROL.search(value_text):
            return ApiError(400, "invalid_query", f"{field}: {ID_RULE}", field)
    return None


def _decoded(part: bytes) -> str | None:
    """A query string's name or value as the routes see it (`+` is a space), or None: not UTF-8."""
    return _text(unquote_to_bytes(part.replace(b"+", b" ")))


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None
