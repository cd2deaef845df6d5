"""Request bodies are read as sent: a compressed one is refused, not misread.

A body with `Content-Encoding: gzip` (or br, deflate, zstd...) would reach the JSON decoder as
compressed bytes and be answered 400 `malformed_json`, which sends the client looking at its
JSON. This ASGI middleware answers such a request 415 `unsupported_content_encoding`, naming the
header and its value, before any route reads it. `identity` (or no header) passes.

Decompressing instead would need a cap on the decompressed size equal to the route's body limit
(api/body_limits.py) to keep a small gzip bomb out; no client of ours compresses requests, so
the refusal is the safer answer.
"""

from __future__ import annotations

from api.errors import ApiError

HEADER = b"content-encoding"


class ContentEncodings:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key != HEADER:
                    continue
                text = value.decode("latin-1").strip()
                codings = [c.strip().lower() for c in text.split(",") if c.strip()]
                if any(c != "identity" for c in codings):
                    refusal = ApiError(
                        415, "unsupported_content_encoding",
                        f"Content-Encoding {text!r} is not supported: send the body uncompressed "
                        "(no Content-Encoding header, or identity)",
                        field="Content-Encoding",
                    )
                    return await refusal.response()(scope, receive, send)
        await self.app(scope, receive, send)
