"""The one request size limit of the API: an ASGI middleware in front of every route.

Ingest routes (`/v1/events...`) take up to INGEST_MAX_BODY_BYTES, every other route up to
API_MAX_BODY_BYTES. A body over the limit is refused with 413 `body_too_large`, naming the
limit and its setting: from Content-Length before anything is read, else (chunked) as soon as
the bytes read exceed it. Routes just `await request.body()`.

A chunked body over the limit makes the route's read raise `BodyTooLarge` (our error handler
answers it); should some code turn that into another answer (FastAPI reports a failed read of a
declared `Body` as a 400), the answer is replaced by the 413 all the same.
"""

from __future__ import annotations

from prometheus_client import Counter

from api.errors import ApiError

INGEST_PREFIX = "/v1/events"
REFUSED = Counter("openmonetize_http_body_too_large_total", "Requests refused with 413 for their body size", ["limit"])


class BodyTooLarge(ApiError):
    def __init__(self, what: str, limit: int, setting: str):
        super().__init__(413, "body_too_large", f"{what}; this route takes at most {limit} bytes ({setting})")


class BodyLimits:
    def __init__(self, app, api_max_bytes: int, ingest_max_bytes: int):
        self.app = app
        self.api_max_bytes = api_max_bytes
        self.ingest_max_bytes = ingest_max_bytes

    def limit_for(self, path: str) -> tuple[int, str]:
        if path == INGEST_PREFIX or path.startswith(INGEST_PREFIX + "/"):
            return self.ingest_max_bytes, "INGEST_MAX_BODY_BYTES"
        return self.api_max_bytes, "API_MAX_BODY_BYTES"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, setting = self.limit_for(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                text = declared.decode(errors="replace")
                error = ApiError(400, "invalid_content_length", f"Content-Length {text!r} is not a number")
                return await error.response()(scope, receive, send)
            if int(declared) > limit:
                REFUSED.labels(setting).inc()
                refusal = BodyTooLarge(f"the body is {int(declared)} bytes", limit, setting)
                return await refusal.response()(scope, receive, send)

        size = 0
        refused: BodyTooLarge | None = None

        async def counted_receive():
            nonlocal size, refused
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = BodyTooLarge(f"the body exceeds {limit} bytes", limit, setting)
                    REFUSED.labels(setting).inc()
                    raise refused
            return message

        replaced = False

        async def checked_send(message):
            nonlocal replaced
            if refused is not None and message["type"] == "http.response.start" and message["status"] != 413:
                replaced = True
                return await refused.response()(scope, receive, send)
            if replaced:
                return None  # the body of the answer that the 413 replaced
            return await send(message)

        await self.app(scope, counted_receive, checked_send)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.strip()
    return None
