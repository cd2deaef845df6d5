"""The dashboard's session: the API key a user signed in with, kept server-side in meaning,
sealed in an opaque cookie (AES-GCM, so the browser holds ciphertext it can neither read nor
forge), HttpOnly and SameSite=Strict, never in a URL.

The API runs several worker processes (API_WORKERS), so the session cannot live in one
process's memory; sealing it with a key every worker shares keeps it stateless.
DASHBOARD_SESSION_SECRET (hex, 32 bytes) is that key; unset, `api/server.py` draws one at start
and hands it to its workers, so sessions end when the API restarts.

The key is checked on EVERY request exactly as `api/auth.py` checks a header key (the same
cache, which hears revocations within milliseconds), so a revoked key ends its session at once.
Each session carries its own CSRF token, which every form posts back.

Signing out ends the session, not just the browser's copy of the cookie: each session carries a
random id, sign-out lists it in Postgres (`dashboard_signed_out_sessions`, until the cookie
would have expired; expired rows are pruned at each sign-out), and every request of every API
process refuses a listed id. One indexed lookup per dashboard request; it survives an API restart.
A cookie sealed before session ids existed (no id) is refused: sign in again.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import secrets
import time
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Request

from openmonetize.stores import tenants

COOKIE = "om_dashboard"
SECRET_ENV = "DASHBOARD_SESSION_SECRET"
MAX_AGE_S = 12 * 3600
_AAD = b"openmonetize-dashboard-session-v1"


@dataclass(frozen=True)
class Session:
    api_key: str
    customer_id: str
    csrf: str
    issued_at: float
    session_id: str = ""  # what sign-out revokes


class Sealer:
    """Seal and open session cookies with one AES-256-GCM key."""

    def __init__(self, secret_hex: str | None):
        key = bytes.fromhex(secret_hex) if secret_hex else secrets.token_bytes(32)
        if len(key) != 32:
            raise ValueError(f"{SECRET_ENV} must be 64 hex characters (32 bytes)")
        self._aead = AESGCM(key)

    def seal(self, session: Session) -> str:
        nonce = secrets.token_bytes(12)
        body = orjson.dumps({"k": session.api_key, "c": session.customer_id, "x": session.csrf, "t": session.issued_at,
                             "s": session.session_id})
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, _AAD)).decode().rstrip("=")

    def open(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None (absent, tampered with, sealed by another key, expired)."""
        if not cookie or len(cookie) > 4000:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            data = orjson.loads(self._aead.decrypt(raw[:12], raw[12:], _AAD))
            session = Session(data["k"], data["c"], data["x"], float(data["t"]), str(data["s"]))
        except (ValueError, InvalidTag, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if not session.session_id or (now or time.time()) - session.issued_at > MAX_AGE_S:
            return None
        return session


def sealer_of(request: Request) -> Sealer:
    app = request.app
    sealer = getattr(app.state, "dashboard_sealer", None)
    if sealer is None:
        secret = app.state.settings.dashboard_session_secret or os.environ.get(SECRET_ENV) or None
        app.state.dashboard_sealer = sealer = Sealer(secret)
    return sealer


def new_session(api_key: str, customer_id: str) -> Session:
    return Session(api_key, customer_id, secrets.token_urlsafe(24), time.time(), secrets.token_urlsafe(24))


def _signed_out(pool, session_id: str) -> bool:
    with pool.connection() as conn:
        row = conn.execute("SELECT 1 FROM dashboard_signed_out_sessions WHERE session_id = %s", (session_id,)).fetchone()
    return row is not None


def _sign_out(pool, session: Session) -> None:
    expires = session.issued_at + MAX_AGE_S
    with pool.connection() as conn:
        conn.execute("DELETE FROM dashboard_signed_out_sessions WHERE expires_at < now()")
        conn.execute(
            "INSERT INTO dashboard_signed_out_sessions (session_id, expires_at) VALUES (%s, to_timestamp(%s))"
            " ON CONFLICT (session_id) DO NOTHING",
            (session.session_id, expires),
        )


async def sign_out(request: Request, session: Session) -> None:
    """End a session everywhere: its id refused by every API process until its cookie expires."""
    await asyncio.to_thread(_sign_out, request.app.state.db, session)


async def current(request: Request) -> Session | None:
    """The signed-in session whose key is still active, or None. Raises when keys cannot be
    checked (Postgres down): the caller says so rather than signing the user out."""
    session = sealer_of(request).open(request.cookies.get(COOKIE))
    if session is None or not session.api_key.startswith(tenants.KEY_PREFIX):
        return None
    customer_id = await request.app.state.api_keys.customer_for(session.api_key)
    if customer_id is None or customer_id != session.customer_id:
        return None  # revoked, or the key changed hands: the session is over
    if await asyncio.to_thread(_signed_out, request.app.state.db, session.session_id):
        return None
    return session


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), token.encode())


def cookie_options(request: Request) -> dict:
    return dict(
        key=COOKIE, max_age=MAX_AGE_S, httponly=True, samesite="strict", path="/dashboard",
        secure=request.url.scheme == "https",
    )
