"""API-key authentication with an in-process cache, so that a request does not cost a Postgres
round trip.

A key arrives as `X-OM-Api-Key: om_...` or `Authorization: Bearer om_...`. Its SHA-256 maps to
the owning customer for `API_KEY_CACHE_TTL_S` (default 30 s); an unknown or revoked key is
remembered as such for `API_KEY_NEGATIVE_CACHE_TTL_S` (default 5 s), so a client hammering with
a bad key does not hammer Postgres either.

Revocation is effective at once: a trigger on `api_keys` NOTIFYs the key's hash when it is
revoked, and every API process LISTENs (the lifespan of `router`) and drops it from its cache,
within milliseconds of the revoking transaction's commit. A lookup that was in flight when a
revocation arrived is not cached. While a process's listening connection is down, it may miss
a revocation; it clears its whole cache when it listens again, and the TTL bounds the rest: a
revoked key works at most API_KEY_CACHE_TTL_S longer in that process.

A NEW key may be refused for up to API_KEY_NEGATIVE_CACHE_TTL_S if it was tried (and failed)
just before it existed.

A Postgres lookup happens only on a cache miss, and that lookup (`tenants.customer_for_key`)
records `last_used_at` at most once a minute per key. Concurrent misses for the same key share
one lookup.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import asynccontextmanager

import psycopg
from fastapi import APIRouter, Request
from psycopg_pool import ConnectionPool

from api.errors import ApiError
from api.token_buckets import TokenBuckets
from openmonetize.logs import get_logger
from openmonetize.stores import tenants

log = get_logger(__name__)

API_KEY_HEADER = "x-om-api-key"
MAX_CACHED_KEYS = 100_000  # beyond this, expired entries are purged (random bad keys can't grow it forever)
REVOCATION_CHANNEL = "om_api_key_revoked"  # see migration 0006
RELISTEN_AFTER_S = 1.0
_HINT = "send the key in the X-OM-Api-Key header or as `Authorization: Bearer om_...`"


class ApiKeys:
    """Hashed API key → customer id, cached; see the module docstring for the TTL semantics."""

    def __init__(self, pool: ConnectionPool, ttl_s: float, negative_ttl_s: float,
                 failed_lookups: TokenBuckets | None = None):
        self.pool = pool
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.failed_lookups = failed_lookups  # per client address; see `customer_for`
        self._cache: dict[bytes, tuple[str | None, float]] = {}
        self._lookups: dict[bytes, asyncio.Future[str | None]] = {}
        self._revocations = 0  # bumped by every revocation heard, so that a lookup racing one is not cached

    async def customer_for(self, api_key: str, address: str | None = None) -> str | None:
        """The customer owning an active key, or None.

        Each unknown key costs a Postgres lookup, and the per-key rate limit cannot hold back a
        client that sends a new key each time: past API_KEY_FAILED_LOOKUPS_BURST failed lookups
        from one client `address` (refilled at API_KEY_FAILED_LOOKUPS_PER_S), a key that is not
        cached raises KeyGuessing instead of being looked up. A cached key always answers."""
        digest = tenants.hash_key(api_key)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        guesses = self.failed_lookups if address is not None else None
        if guesses is not None and (wait_s := guesses.wait(address.encode())) > 0:
            raise KeyGuessing(wait_s)
        customer_id = await self._looked_up(digest, api_key, now)
        if customer_id is None and guesses is not None:
            guesses.take(address.encode())
        return customer_id

    async def _looked_up(self, digest: bytes, api_key: str, now: float) -> str | None:
        pending = self._lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._lookups[digest] = future
        revocations = self._revocations
        try:
            customer_id = await asyncio.to_thread(self._lookup, api_key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._lookups[digest]
        future.set_result(customer_id)
        if revocations == self._revocations:
            self._remember(digest, customer_id, now)
        return customer_id

    async def follow_revocations(self, database_url: str) -> None:
        """Forget each key as its revocation is announced; runs until cancelled."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {REVOCATION_CHANNEL}")
                    self._revoked(None)  # whatever was revoked while nobody listened
                    async for notice in conn.notifies():
                        self._revoked(bytes.fromhex(notice.payload))
            except (psycopg.Error, OSError, ValueError) as exc:
                log.warning("api_key_revocations_not_heard", error=str(exc)[:200], retry_in_s=RELISTEN_AFTER_S)
                await asyncio.sleep(RELISTEN_AFTER_S)

    def _revoked(self, digest: bytes | None) -> None:
        """Drop one key (None: every key) from the cache."""
        self._revocations += 1
        if digest is None:
            self._cache.clear()
        else:
            self._cache.pop(digest, None)

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


@asynccontextmanager
async def lifespan(app):
    """Per API process: the key cache, and the task that hears of revocations."""
    settings = app.state.settings
    rate = settings.api_key_failed_lookups_per_s
    app.state.api_keys = keys = ApiKeys(
        app.state.db, settings.api_key_cache_ttl_s, settings.api_key_negative_cache_ttl_s,
        TokenBuckets(rate, settings.api_key_failed_lookups_burst) if rate > 0 else None,
    )
    listener = asyncio.create_task(keys.follow_revocations(settings.database_url))
    try:
        yield
    finally:
        listener.cancel()


router = APIRouter(lifespan=lifespan)


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
    if not key.startswith(tenants.KEY_PREFIX):  # not one of ours: refused without a lookup
        raise _unauthorized("invalid_api_key", f"the API key is unknown or revoked; {_HINT}")
    try:
        customer_id = await request.app.state.api_keys.customer_for(key, client_address(request))
    except KeyGuessing as exc:
        retry_after = max(1, math.ceil(exc.wait_s))
        raise ApiError(429, "too_many_unknown_keys",
                       f"too many unknown API keys from this address (API_KEY_FAILED_LOOKUPS_PER_S, "
                       f"API_KEY_FAILED_LOOKUPS_BURST); retry after {retry_after} s",
                       headers={"Retry-After": str(retry_after)}) from None
    except Exception as exc:  # noqa: BLE001 - Postgres down or pool exhausted: not the client's fault
        raise ApiError(
            503, "auth_unavailable", f"API keys cannot be checked right now ({type(exc).__name__}); retry later",
            headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)},
        ) from exc
    if customer_id is None:
        raise _unauthorized("invalid_api_key", f"the API key is unknown or revoked; {_HINT}")
    return customer_id


class KeyGuessing(Exception):
    """This address sent too many unknown keys; it may look one up again in `wait_s` seconds."""

    def __init__(self, wait_s: float):
        super().__init__(f"too many unknown API keys; retry in {wait_s:.1f} s")
        self.wait_s = wait_s


def client_address(request) -> str:
    return request.client.host if request.client else "-"


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="openmonetize"'})
