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
