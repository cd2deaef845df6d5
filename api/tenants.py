"""Tenants (our customers) and their API keys, stored in Postgres.

An API key is `om_` followed by 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is returned once, at creation. `prefix` (the first 11 characters) is
kept so that an operator can tell keys apart in listings.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import psycopg

KEY_PREFIX = "om_"
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class NewCustomer:
    customer_id: str
    name: str
    api_key: str
    key_id: str


def hash_key(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def validate_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValueError("name: must not be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValueError(f"name: at most {MAX_NAME_LENGTH} characters, got {len(cleaned)}")
    return cleaned


def create_customer(conn: psycopg.Connection, name: str) -> NewCustomer:
    """Create a tenant and its first API key in one transaction."""
    name = validate_name(name)
    customer_id = "cus_" + secrets.token_hex(8)
    key_id = "key_" + secrets.token_hex(8)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute("INSERT INTO customers (customer_id, name) VALUES (%s, %s)", (customer_id, name))
        conn.execute(
            "INSERT INTO api_keys (key_id, customer_id, key_hash, prefix) VALUES (%s, %s, %s, %s)",
            (key_id, customer_id, hash_key(api_key), api_key[:11]),
        )
    return NewCustomer(customer_id, name, api_key, key_id)


def customer_for_key(conn: psycopg.Connection, api_key: str) -> str | None:
    """The customer id owning an active key, or None. Records the key's last use."""
    row = conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL "
        "RETURNING customer_id",
        (hash_key(api_key),),
    ).fetchone()
    return row[0] if row else None


def find_customer_by_name(conn: psycopg.Connection, name: str) -> str | None:
    """The id of the oldest customer named `name`, or None (names are not unique)."""
    row = conn.execute(
        "SELECT customer_id FROM customers WHERE name = %s ORDER BY created_at, customer_id LIMIT 1", (name,)
    ).fetchone()
    return row[0] if row else None


def create_api_key(conn: psycopg.Connection, customer_id: str, key_name: str = "default") -> str:
    """Mint another API key for an existing customer; the key is returned once."""
    key_id = "key_" + secrets.token_hex(8)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(
            "INSERT INTO api_keys (key_id, customer_id, key_hash, prefix, name) VALUES (%s, %s, %s, %s, %s)",
            (key_id, customer_id, hash_key(api_key), api_key[:11], key_name),
        )
    return api_key
