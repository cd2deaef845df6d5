"""What the proxy tests share: the fake providers, an `openmonetize proxy` process pointed at
them, a funded user of a fresh tenant, and reading back what was billed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from tests.conftest import eventually, unique
from tests.integration.support import clickhouse_query

# Every call's model rates with `default` (embeddings and images with their event type's rule).
RULES = {
    "default": {"input_tokens": "1", "output_tokens": "4", "cached_input_tokens": "0.5", "per_unit": 1000},
    "EMBEDDING": {"input_tokens": "0.02", "per_unit": 1000},
    "IMAGE_GENERATION": {"image": "4", "images": {"1024x1024:hd": "8"}},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProxyProcess:
    """`openmonetize proxy` on a free port, every provider pointed at `upstream_url` (Anthropic at
    `anthropic_url` if given); `settings` are environment variables for it."""

    def __init__(self, upstream_url: str, log_path: Path, anthropic_url: str | None = None, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "openmonetize", "proxy", "--port", str(self.port), "--openai-base-url", upstream_url,
             "--anthropic-base-url", anthropic_url or upstream_url, "--gemini-base-url", upstream_url],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "LOG_LEVEL": "INFO", **settings},
        )
        eventually(self._ready, timeout_s=60, interval_s=0.2, what=f"the proxy to be ready (log: {log_path})")

    def _ready(self) -> bool:
        assert self.process.poll() is None, "the proxy exited"
        return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


@dataclass
class User:
    """A user of a fresh tenant, with a burn table and (unless unfunded) 1000 credits."""

    tenant: object
    user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-OM-Api-Key": self.tenant.api_key, "X-OM-Customer-Id": self.tenant.customer_id,
                "X-OM-User-Id": self.user_id, "X-OM-Feature-Id": "assistant"}


def api(settings, tenant, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{settings.api_url}{path}", headers={"X-OM-Api-Key": tenant.api_key}, timeout=30, **kwargs)


def new_user(settings, tenant, credits: str | None = "1000") -> User:
    body = {"name": "standard", "rules": RULES, "effective_from": (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()}
    created = api(settings, tenant, "POST", "/v1/burn-tables", json=body)
    assert created.status_code == 201, created.text
    user = User(tenant, unique("user"))
    if credits is not None:
        bought = api(settings, tenant, "POST", "/v1/credits/purchase", params={"wait": "true"},
                     json={"customer_id": tenant.customer_id, "user_id": user.user_id, "amount": credits})
        assert bought.status_code == 200 and bought.json()["status"] == "applied", bought.text
    return user


def wait_until_allowed(proxy: ProxyProcess, user: User) -> None:
    """Until the proxy's own views show the user's burn table and credits: a probe whose upstream
    answers 500 (so it is billed nothing) gets past the entitlement check."""

    def probe() -> bool:
        answer = httpx.post(f"{proxy.url}/v1/chat/completions", headers=user.headers, timeout=10,
                            json={"model": "fail-500", "messages": [{"role": "user", "content": "probe"}]})
        assert answer.status_code in (402, 403, 500), answer.text
        return answer.status_code == 500

    eventually(probe, timeout_s=30, interval_s=0.1, what="the proxy to see the user's burn table and credits")


@dataclass(frozen=True)
class Billed:
    event_id: str
    provider: str
    model: str
    event_type: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    image_count: int
    image_size: str
    quality: str
    credits: Decimal
    source: str
    metadata: dict
    ledger_amount: Decimal


def billed(settings, user: User, count: int) -> list[Billed]:
    """The user's `count` usage events, once both ClickHouse and the Postgres ledger have them
    (and no more than `count`), oldest first."""

    def read() -> list[Billed] | None:
        rows = clickhouse_query(
            settings,
            "SELECT event_id, provider, model, event_type, input_tokens, output_tokens, cached_input_tokens, image_count, "
            "image_size, quality, credits, source, metadata FROM usage_events FINAL "
            "WHERE customer_id = {c:String} AND user_id = {u:String} ORDER BY timestamp, event_id",
            c=user.tenant.customer_id, u=user.user_id)
        assert len(rows) <= count, rows
        if len(rows) < count:
            return None
        with psycopg.connect(settings.database_url) as conn:
            amounts = dict(conn.execute(
                "SELECT event_id, amount FROM ledger_entries WHERE customer_id = %s AND kind = 'usage_debit' "
                "AND event_id = ANY(%s)", (user.tenant.customer_id, [row[0] for row in rows])).fetchall())
        if len(amounts) < count:
            return None
        return [Billed(*row, ledger_amount=amounts[row[0]]) for row in rows]

    return eventually(read, timeout_s=60, interval_s=0.25, what=f"{count} billed events of {user.user_id}")


def nothing_billed(settings, user: User) -> bool:
    rows = clickhouse_query(settings, "SELECT count() FROM usage_events FINAL WHERE customer_id = {c:String} "
                                      "AND user_id = {u:String}", c=user.tenant.customer_id, u=user.user_id)
    return rows[0][0] == 0
