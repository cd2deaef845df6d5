"""Tenants (our customers) and their API keys, stored in Postgres: one place for both, used by
the routes (api/routes/api_keys.py), the auth cache (api/auth.py) and `openmonetize admin`.

An API key is `om_` followed by 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is returned once, at creation. `prefix` (the first 11 characters) is
kept so that an operator can tell keys apart in listings.

Revoking a key is final. Through the API a tenant cannot revoke its last active key (it could
not make another without the operator); the operator can (`openmonetize admin api-keys
revoke`), e.g. to lock a tenant out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from openmonetize.stores.refusals import Conflict, Invalid, NotFound

KEY_PREFIX = "om_"
MAX_NAME_LENGTH = 200
# A key's last_used_at is written at most this often: it says "in use lately", not every request.
LAST_USED_RESOLUTION = "1 minute"


@dataclass(frozen=True)
class NewCustomer:
    customer_id: str
    name: str
    api_key: str
    key_id: str


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    created_at: datetime
    active_keys: int


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    customer_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    api_key: str  # the secret: shown once, never stored


_KEY_COLUMNS = "key_id, customer_id, name, prefix, created_at, last_used_at, revoked_at"


def hash_key(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def validate_name(name: str, field: str = "name") -> str:
    cleaned = name.strip()
    if not cleaned:
        raise Invalid("invalid_request", f"{field}: must not be empty", field)
    if len(cleaned) > MAX_NAME_LENGTH:
        raise Invalid("invalid_request", f"{field}: at most {MAX_NAME_LENGTH} characters, got {len(cleaned)}", field)
    return cleaned


def create_customer(conn: psycopg.Connection, name: str) -> NewCustomer:
    """Create a tenant and its first API key in one transaction."""
    name = validate_name(name)
    customer_id = "cus_" + secrets.token_hex(8)
    with conn.transaction():
        conn.execute("INSERT INTO customers (customer_id, name) VALUES (%s, %s)", (customer_id, name))
        new = _insert_key(conn, customer_id, "default")
    return NewCustomer(customer_id, name, new.api_key, new.key.key_id)


def list_customers(conn: psycopg.Connection) -> list[Customer]:
    """Every tenant, oldest first, with its number of active keys."""
    rows = conn.execute(
        "SELECT c.customer_id, c.name, c.created_at, count(k.key_id) FROM customers c "
        "LEFT JOIN api_keys k ON k.customer_id = c.customer_id AND k.revoked_at IS NULL "
        "GROUP BY c.customer_id ORDER BY c.created_at, c.customer_id"
    ).fetchall()
    return [Customer(*row) for row in rows]


def customer_for_key(conn: psycopg.Connection, api_key: str) -> str | None:
    """The customer id owning an active key, or None. Records the key's use, at most once per
    LAST_USED_RESOLUTION, so that a busy key does not cost a write per lookup."""
    row = conn.execute(
        "SELECT key_id, customer_id, last_used_at IS NULL OR last_used_at < now() - %s::interval "
        "FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
        (LAST_USED_RESOLUTION, hash_key(api_key)),
    ).fetchone()
    if row is None:
        return None
    key_id, customer_id, stale = row
    if stale:
        conn.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE key_id = %s "
            "AND (last_used_at IS NULL OR last_used_at < now() - %s::interval)",
            (key_id, LAST_USED_RESOLUTION),
        )
    return customer_id


def find_customer_by_name(conn: psycopg.Connection, name: str) -> str | None:
    """The id of the oldest customer named `name`, or None (names are not unique)."""
    row = conn.execute(
        "SELECT customer_id FROM customers WHERE name = %s ORDER BY created_at, customer_id LIMIT 1", (name,)
    ).fetchone()
    return row[0] if row else None


def create_api_key(conn: psycopg.Connection, customer_id: str, key_name: str = "default") -> NewApiKey:
    """Mint another API key for an existing customer; the secret is returned once."""
    key_name = validate_name(key_name)
    with conn.transaction():
        _lock_customer(conn, customer_id)
        return _insert_key(conn, customer_id, key_name)


def list_api_keys(conn: psycopg.Connection, customer_id: str) -> list[ApiKey]:
    """A tenant's keys, revoked ones included, newest first."""
    rows = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE customer_id = %s ORDER BY created_at DESC, key_id DESC",
        (customer_id,),
    ).fetchall()
    return [ApiKey(*row) for row in rows]


def revoke_api_key(conn: psycopg.Connection, customer_id: str, key_id: str, allow_last: bool = False) -> ApiKey:
    """Revoke one of the tenant's keys (revoking a revoked key changes nothing). Every API
    process hears of it at once (a trigger NOTIFYs, api/auth.py listens). Unless `allow_last`,
    the tenant's last active key is refused (409 last_active_key)."""
    with conn.transaction():
        _lock_customer(conn, customer_id)  # two revocations at once cannot both pass the last-key check
        row = conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE customer_id = %s AND key_id = %s", (customer_id, key_id)
        ).fetchone()
        if row is None:
            raise NotFound("api_key_not_found", f"no API key {key_id} for this customer", "key_id")
        key = ApiKey(*row)
        if key.revoked_at is not None:
            return key
        if not allow_last:
            [active] = conn.execute(
                "SELECT count(*) FROM api_keys WHERE customer_id = %s AND revoked_at IS NULL", (customer_id,)
            ).fetchone()
            if active <= 1:
                raise Conflict(
                    "last_active_key",
                    "this is the customer's last active API key; create another key before revoking it",
                    "key_id",
                )
        row = conn.execute(
            f"UPDATE api_keys SET revoked_at = now() WHERE key_id = %s RETURNING {_KEY_COLUMNS}", (key_id,)
        ).fetchone()
    return ApiKey(*row)


def _lock_customer(conn: psycopg.Connection, customer_id: str) -> None:
    if conn.execute("SELECT 1 FROM customers WHERE customer_id = %s FOR UPDATE", (customer_id,)).fetchone() is None:
        raise NotFound("customer_not_found", f"no customer {customer_id}", "customer_id")


def _insert_key(conn: psycopg.Connection, customer_id: str, key_name: str) -> NewApiKey:
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        f"INSERT INTO api_keys (key_id, customer_id, key_hash, prefix, name) VALUES (%s, %s, %s, %s, %s) "
        f"RETURNING {_KEY_COLUMNS}",
        ("key_" + secrets.token_hex(8), customer_id, hash_key(api_key), api_key[:11], key_name),
    ).fetchone()
    return NewApiKey(ApiKey(*row), api_key)
