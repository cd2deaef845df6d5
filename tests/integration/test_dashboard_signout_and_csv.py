"""Dashboard hardening against the running API: signing out ends the session for every copy of its
cookie (on every API process), and the usage CSV cannot carry a formula into a spreadsheet."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.support import token_event
from tests.integration.test_dashboard import Browser, csrf_of

pytestmark = pytest.mark.integration

FORMULA = '=HYPERLINK("http://x","y")'


def test_a_signed_out_cookie_replayed_lands_on_sign_in(settings, tenant):
    browser = Browser(settings, tenant.api_key)
    stolen = browser.http.cookies["om_dashboard"]
    replay = httpx.Client(base_url=settings.api_url, timeout=30, cookies={"om_dashboard": stolen})
    assert replay.get("/dashboard/overview").status_code == 200  # a copy of a live cookie works
    other = Browser(settings, tenant.api_key)  # another session of the same key, not signed out

    browser.csrf = csrf_of(browser.get("/dashboard/overview").text)
    assert browser.post("/dashboard/signout").status_code == 303
    for _ in range(6):  # API_WORKERS processes: each must refuse it
        answer = replay.get("/dashboard/overview")
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/signin"
        assert replay.post("/dashboard/api-keys", data={"csrf_token": browser.csrf, "name": "x"}).status_code == 303
    assert other.get("/dashboard/overview").status_code == 200  # signing out one session ends only that one


def test_usage_csv_escapes_cells_a_spreadsheet_would_run(settings, tenant):
    api = httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30)
    rules = {"default": {"input_tokens": "1", "output_tokens": "2"}}
    assert api.post("/v1/burn-tables", json={"name": "t", "rules": rules}).status_code == 201
    api.post("/v1/credits/purchase", params={"wait": "true"}, json={"customer_id": tenant.customer_id, "amount": "1000"})
    eventually(lambda: api.get(f"/v1/customers/{tenant.customer_id}/credits").json()["balance"] == "1000",
               timeout_s=20, what="the purchase in the balances view")
    events = [token_event(user_id=FORMULA, team_id="@team", feature_id="+chat", model="gpt-4o", input_tokens=10,
                          output_tokens=5)]
    ingested = api.post("/v1/events/ingest", json={"events": events}).json()
    assert ingested["accepted"] == 1, ingested
    browser = Browser(settings, tenant.api_key)
    today = datetime.now(timezone.utc).date()
    period = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}

    def exported() -> list[dict]:
        response = browser.get("/dashboard/usage.csv", params=period)
        assert response.status_code == 200, response.text
        return list(csv.DictReader(io.StringIO(response.text)))

    rows = eventually(lambda: exported() or None, timeout_s=30, what="the event in the usage rollups")
    [row] = rows
    assert (row["user_id"], row["team_id"], row["feature_id"]) == ("'" + FORMULA, "'@team", "'+chat")
    assert (row["model"], row["events"], row["input_tokens"], row["credits"]) == ("gpt-4o", "1", "10", "20")
    for column in ("usd_cost", "revenue_usd", "margin_usd"):
        float(row[column])  # amounts stay numbers, negative ones too
