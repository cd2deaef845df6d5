"""The tenants a fault run charges: fresh ones per run, so its checks see only its own events
(shared by `make chaos` and `make soak`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import psycopg

from deploy.bench.pipeline import RULES
from openmonetize.settings import Settings

FUNDED_USERS = 10


class Tenants:
    """Fresh tenants for one scenario: a burn table covering every generated event, funded users."""

    def __init__(self, settings: Settings, count: int = 2, prefix: str = "chaos"):
        from openmonetize.stores.tenants import create_customer

        tag = uuid.uuid4().hex[:6]
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            created = [create_customer(conn, f"{prefix}-{tag}-{i + 1}") for i in range(count)]
        self.keys = {t.customer_id: t.api_key for t in created}
        with httpx.Client(base_url=settings.api_url, timeout=30) as api:
            for customer, key in self.keys.items():
                headers = {"X-OM-Api-Key": key}
                answer = api.post("/v1/burn-tables", headers=headers, json={
                    "name": "chaos", "rules": RULES,
                    "effective_from": (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()})
                answer.raise_for_status()
                for user in range(FUNDED_USERS):
                    bought = api.post("/v1/credits/purchase", params={"wait": "true"}, headers=headers, json={
                        "customer_id": customer, "user_id": f"user-{user}", "amount": "100000"})
                    bought.raise_for_status()

    @property
    def ids(self) -> list[str]:
        return list(self.keys)
