"""API-key authentication with an in-process cache, so that a request does not cost a Postgres
round trip.

A key arrives as `X-OM-Api-Key: om_...` or `Authorization: Bearer om_...`. Its SHA-256 maps to
the owning customer for `API_KEY_CACHE_TTL_S` (default 30 s); an unknown or revoked key is
remembered as such for `API_KEY_NEGATIVE_CACHE_TTL_S` (default 5 s), so a client hammering with
a bad key does not hammer Postgres either. Consequences, accepted on purpose:

- a REVOKED key keeps working for up to API_KEY_CACHE_TTL_S in every API process that used it
  just before the revocation;
- a NEW key may be refused for up to API_KEY_NEGATIVE_CACHE_TTL_S if it was tried (and failed)
  just before it existed.

A Postgres lookup happens only on a cache miss, and that lookup (`tenants.customer_for_key`)
is what records `last_used_at`: it is therefore written at most once per TTL per key and
process, not per request. Concurrent misses for the same key share one lookup.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request
from psycopg_pool import ConnectionPool

from api import tenants
from api.errors import ApiError

API_KEY_HEADER = "x-om-api-key"
MAX_CACHED_KEYS = 100_000  # beyond this, expired entries are purged (random bad keys can't grow it forever)
_HINT = "send the key in the X-OM-Api-Key header or as `Authorization: Bearer om_...`"


class ApiKeys:
    """Hashed API key → customer id, cached; see the module docstring for the TTL semantics."""

    def __init__(self, pool: ConnectionPool, ttl_s: float, negative_ttl_s: float):
        self.pool = pool
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._cache: dict[bytes, tuple[str | None, float]] = {}
        self._lookups: dict[bytes, asyncio.Future[str | None]] = {}

    async def customer_for(self, api_key: str) -> str | None:
        """The customer owning an active key, or None."""
        digest = tenants.hash_key(api_key)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        pending = self._lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._lookups[digest] = future
        try:
            customer_id = await asyncio.to_thread(self._lookup, api_key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._lookups[digest]
        future.set_result(customer_id)
        self._remember(digest, customer_id, now)
        return customer_id

    def _lookup(self, api_key: str) -> str | None:
        with self.pool.connection() as conn:
            return tenants.customer_for_key(conn, api_key)

    def _remember(self, digest: bytes, customer_id: str | None, now: float) -> None:
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
        ttl = self.ttl_s if customer_id is not None else self.negative_ttl_s
        self._cache[digest] = (customer_id, now + ttl)


def api_key_from(request: Request) -> str:
    """The key a request carries, or a 401 naming the headers to use."""
    key = request.headers.get(API_KEY_HEADER)
    if key is None:
        authorization = request.headers.get("authorization")
        if authorization is None:
            raise _unauthorized("missing_api_key", f"no API key: {_HINT}")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthorized("invalid_authorization", f"the Authorization header is not `Bearer <key>`: {_HINT}")
        key = credentials.strip()
    return key.strip()


async def tenant(request: Request) -> str:
    """FastAPI dependency: the customer id of the request's API key, or 401."""
    key = api_key_from(request)
    customer_id = None
    if key.startswith(tenants.KEY_PREFIX):
        try:
            customer_id = await request.app.state.api_keys.customer_for(key)
        except Exception as exc:  # noqa: BLE001 - Postgres down or pool exhausted: not the client's fault
            raise ApiError(
                503, "auth_unavailable", f"API keys cannot be checked right now ({type(exc).__name__}); retry later",
                headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
            ) from exc
    if customer_id is None:
        raise _unauthorized("invalid_api_key", f"the API key is unknown or revoked; {_HINT}")
    return customer_id


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="openmonetize"'})
