"""Rate limiting per API key: a token bucket per key in each API process, in front of every route.

A key may make API_RATE_LIMIT_PER_S requests per second on average and API_RATE_LIMIT_BURST at
once (0 per second: no limit). Beyond, the request is refused with 429 `rate_limited` and a
`Retry-After` (whole seconds until the bucket holds a token again) before anything else runs:
no key lookup, no body read. The buckets are per process, so with API_WORKERS processes a key
may get up to that many times the rate when its connections spread over them.

Buckets are keyed by the SHA-256 of the key as sent (unknown and revoked keys are limited
too); requests without a key are not limited here (they get their 401 at once).
"""

from __future__ import annotations

import math

from prometheus_client import Counter

from api.auth import API_KEY_HEADER
from api.errors import ApiError
from api.token_buckets import TokenBuckets
from openmonetize.stores.tenants import hash_key

LIMITED = Counter("openmonetize_http_rate_limited_total", "Requests refused with 429 by the per-key rate limit")


class RateLimits:
    def __init__(self, app, rate_per_s: float, burst: int):
        self.app = app
        self.buckets = TokenBuckets(rate_per_s, burst) if rate_per_s > 0 else None

    async def __call__(self, scope, receive, send):
        if self.buckets is None or scope["type"] != "http":
            return await self.app(scope, receive, send)
        key = _api_key(scope["headers"])
        if key is not None:
            wait_s = self.buckets.take(hash_key(key))
            if wait_s > 0:
                LIMITED.inc()
                retry_after = max(1, math.ceil(wait_s))
                refusal = ApiError(
                    429, "rate_limited",
                    f"more than {self.buckets.rate:g} requests per second (burst {self.buckets.burst}) with this API key "
                    f"(API_RATE_LIMIT_PER_S, API_RATE_LIMIT_BURST); retry after {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
                return await refusal.response()(scope, receive, send)
        return await self.app(scope, receive, send)


def _api_key(headers) -> str | None:
    """The key as api.auth reads it (X-OM-Api-Key, else a Bearer credential), or None."""
    authorization = None
    for name, value in headers:
        if name == API_KEY_HEADER.encode():
            return value.decode("latin-1").strip()
        if name == b"authorization":
            authorization = value
    if authorization is None:
        return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None
