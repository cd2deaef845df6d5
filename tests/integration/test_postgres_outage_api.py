"""While Postgres refuses connections, the API answers at once: 503 with Retry-After on the
routes that need it, never a 500 and never a client timeout, and the routes that do not need it
(ingest with a known key) go on; once Postgres is back, so is everything.

An API process of the test's own reaches the stack's Postgres through a TCP relay the test cuts
(stopping the stack's Postgres would break every other test).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.api_process import api_process
from tests.integration.support import Proxy, new_tenant, token_event


@pytest.fixture(scope="module")
def relay(settings):
    proxy = Proxy(settings.postgres_port)
    proxy.up()
    yield proxy
    proxy.down()


@pytest.fixture(scope="module")
def cut_api(settings, relay, tmp_path_factory):
    url = (f"postgresql://{settings.postgres_user}:{settings.postgres_password}@127.0.0.1:{relay.port}/"
           f"{settings.postgres_db}")
    with api_process(tmp_path_factory.mktemp("pg-outage") / "api.log", DATABASE_URL=url, API_RATE_LIMIT_PER_S="0") as api:
        yield api


ROUTES = [
    ("GET", "/v1/burn-tables", None),
    ("GET", "/v1/customers/{customer}/ledger", None),
    ("POST", "/v1/credits/purchase", {"user_id": "u1", "amount": "5"}),
    ("GET", "/v1/customers/{customer}/users", None),
]


def test_postgres_away_is_503_with_retry_after_at_once_and_ingest_goes_on(settings, relay, cut_api):
    tenant = new_tenant(settings)
    stranger = new_tenant(settings)  # a real key this API process has not seen yet
    headers = {"X-OM-Api-Key": tenant.api_key, "Idempotency-Key": "k-outage-1"}
    with httpx.Client(base_url=cut_api, headers=headers, timeout=30) as api:
        assert api.get("/v1/burn-tables").status_code == 200  # the key is cached from here on
        relay.down()
        try:
            for method, path, body in ROUTES:
                body = {**body, "customer_id": tenant.customer_id} if body else None
                started = time.monotonic()
                answer = api.request(method, path.format(customer=tenant.customer_id), json=body)
                took = time.monotonic() - started
                assert answer.status_code == 503, (path, answer.status_code, answer.text[:300])
                assert int(answer.headers["Retry-After"]) >= 1 and took < 10, (path, took)
                assert answer.json()["error"]["code"] in ("database_unavailable", "idempotency_unavailable"), answer.text
            unknown = api.get("/v1/burn-tables", headers={"X-OM-Api-Key": stranger.api_key})
            assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "auth_unavailable"
            ingested = api.post("/v1/events/ingest", json={"events": [token_event()]})
            assert ingested.status_code == 202, ingested.text  # Kafka only: goes on without Postgres
        finally:
            relay.up()
        eventually(lambda: api.get("/v1/burn-tables").status_code == 200, timeout_s=30, interval_s=0.5,
                   what="the API back once Postgres is")
        assert api.get("/v1/burn-tables", headers={"X-OM-Api-Key": stranger.api_key}).status_code == 200
