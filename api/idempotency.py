"""Idempotency keys of the credits routes, in Postgres (migration 0004): per tenant, a key
maps to the hash of the first request made with it and, once that request was answered, its
response.

`claim` says what a request carrying a key must do:

- `NEW`: the key is this request's: write the command, answer, then `complete` the key;
- `REPLAY`: the key was answered: return that response, write nothing;
- `IN_FLIGHT`: the same request holds the key but has no answer (a twin racing this one, or an
  earlier try that failed before answering, e.g. Kafka down): write the command again. Its id
  derives from (tenant, key), so the wallet agent applies it once however often it is written;
- `CONFLICT`: the key was used for a different request: 409.

Only 2xx answers are stored: a 503 leaves the key claimed but unanswered, so the retry writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import psycopg


class Outcome(enum.Enum):
    NEW = "new"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    status: int | None = None
    body: bytes | None = None


def claim(
    conn: psycopg.Connection, customer_id: str, key: str, route: str, request_hash: bytes, command_id: str
) -> Claim:
    inserted = conn.execute(
        "INSERT INTO idempotency_keys (customer_id, idempotency_key, route, request_hash, command_id) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (customer_id, key, route, request_hash, command_id),
    ).fetchone()
    if inserted:
        return Claim(Outcome.NEW)
    row = conn.execute(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys "
        "WHERE customer_id = %s AND idempotency_key = %s",
        (customer_id, key),
    ).fetchone()
    stored_hash, status, body = row
    if bytes(stored_hash) != request_hash:
        return Claim(Outcome.CONFLICT)
    if status is None:
        return Claim(Outcome.IN_FLIGHT)
    return Claim(Outcome.REPLAY, status, body.encode())


def complete(conn: psycopg.Connection, customer_id: str, key: str, status: int, body: bytes) -> None:
    """Record the answer; the first answer stays (a racing twin's is not stored)."""
    conn.execute(
        "UPDATE idempotency_keys SET response_status = %s, response_body = %s, completed_at = now() "
        "WHERE customer_id = %s AND idempotency_key = %s AND response_status IS NULL",
        (status, body.decode(), customer_id, key),
    )


def restate(conn: psycopg.Connection, customer_id: str, key: str, status: int, body: bytes) -> None:
    """Replace a completed key's answer: a route that finished its work after the creation's
    commit (a subscription's first grant) keeps the answer it actually gave."""
    conn.execute(
        "UPDATE idempotency_keys SET response_status = %s, response_body = %s WHERE customer_id = %s "
        "AND idempotency_key = %s AND response_status IS NOT NULL",
        (status, body.decode(), customer_id, key),
    )


# --- routes that create a resource in Postgres ---------------------------------------------
# The claim, the creation and the stored answer share ONE transaction: a twin racing this
# request waits on the key's row and then replays the answer; a creation that fails (4xx, a
# crash) rolls the claim back too, so a retry creates. A write that follows the commit (a
# catalog publication) is not covered: its 503 says so, and a retry replays the 201.
def fingerprint(route: str, *parts: object) -> bytes:
    """What "the same request" means for a key: the route and the parsed request."""
    import hashlib

    import msgspec
    import orjson

    canonical = [route, *(msgspec.to_builtins(part) if isinstance(part, msgspec.Struct) else part for part in parts)]
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS, default=str)).digest()


def create_once(
    conn: psycopg.Connection, customer_id: str, key: str | None, route: str, request_hash: bytes, create,
    stored=None,
):
    """`create(conn) -> (status, body: bytes, result)` run once per (tenant, key).

    Returns `(claim, status, body, result)`: claim None without a key; REPLAY with the stored
    answer (result None); CONFLICT (nothing created); NEW once created. `stored(body) -> bytes`
    changes what is kept for replays (e.g. without a secret)."""
    if key is None:
        status, body, result = create(conn)
        return None, status, body, result
    with conn.transaction():
        claimed = claim(conn, customer_id, key, route, request_hash, "")
        if claimed.outcome is Outcome.CONFLICT:
            return claimed, None, None, None
        if claimed.outcome is Outcome.REPLAY:
            return claimed, claimed.status, claimed.body, None
        status, body, result = create(conn)  # IN_FLIGHT cannot outlive its transaction: NEW here
        complete(conn, customer_id, key, status, stored(body) if stored else body)
        return Claim(Outcome.NEW), status, body, result


KEY_HEADER_DOC = ("Retry-safe key (1-255 printable ASCII): the same key and request again answers the first "
                  "answer (`Idempotent-Replayed: true`) and creates nothing; with another request, 409")


async def respond_once(request, customer_id: str, header_key: str | None, route: str, parts: tuple, create,
                       stored=None):
    """A creating route's answer with its `Idempotency-Key`: `create(conn) -> (status, body, result)`
    runs at most once per key (`create_once`, on a pooled connection, off the event loop).
    Returns `(response, result)`; result None on a replay. 409 `idempotency_conflict`, 422 for a
    malformed key, 503 when Postgres is not there."""
    from fastapi import Response

    from api.catalog_state import in_db
    from api.credit_requests import RequestError, idempotency_key
    from api.errors import ApiError

    try:
        key = idempotency_key(header_key, None)
    except RequestError as exc:
        raise ApiError(422, "invalid_request", str(exc), exc.field) from None
    request_hash = fingerprint(route, *parts)
    if key is None:
        status, body, result = await in_db(request, create)
        return Response(body, status, media_type="application/json"), result
    try:
        claimed, status, body, result = await in_db(request, create_once, customer_id, key, route, request_hash,
                                                    create, stored)
    except psycopg.OperationalError as exc:  # Postgres down or the pool exhausted: not the client's fault
        raise ApiError(503, "idempotency_unavailable",
                       f"idempotency keys cannot be checked right now ({type(exc).__name__}); retry later",
                       headers={"Retry-After": str(request.app.state.settings.ingest_retry_after_s)}) from exc
    if claimed.outcome is Outcome.CONFLICT:
        raise ApiError(409, "idempotency_conflict",
                       "this Idempotency-Key was already used for a different request; use a new key for a new request",
                       "Idempotency-Key")
    if claimed.outcome is Outcome.REPLAY:
        return Response(body, status, {"Idempotent-Replayed": "true"}, media_type="application/json"), None
    return Response(body, status, media_type="application/json"), result
