"""The dashboard over HTTP against the running API: sign-in and its cookie, pages without a
session, CSRF, a revoked key ending its session, another tenant's ids refused on every page that
takes one, and the usage CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from fastapi.routing import iter_route_contexts

from api.app import create_app
from tests.conftest import eventually
from tests.integration.support import new_tenant, token_event

pytestmark = pytest.mark.integration


def dashboard_routes() -> list[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(create_app().routes):
        if route.path.startswith("/dashboard"):
            found.update((method, route.path) for method in route.methods or () if method != "HEAD")
    return sorted(found)


ROUTES = dashboard_routes()
PUBLIC = {("GET", "/dashboard/signin"), ("POST", "/dashboard/signin"), ("GET", "/dashboard")}


class Browser:
    """An httpx client holding a dashboard session, like a browser would."""

    def __init__(self, settings, api_key: str | None = None):
        self.http = httpx.Client(base_url=settings.api_url, timeout=60, follow_redirects=False)
        self.csrf = ""
        if api_key is not None:
            response = self.http.post("/dashboard/signin", data={"api_key": api_key})
            assert response.status_code == 303, response.text
            self.csrf = csrf_of(self.get("/dashboard/overview").text)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, csrf: bool = True) -> httpx.Response:
        return self.http.post(path, data={**({"csrf_token": self.csrf} if csrf else {}), **(data or {})})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


@pytest.fixture(scope="module")
def victim(settings):
    """Tenant A with a burn table, a rebilling run, a funded user wallet and a second key."""
    a = new_tenant(settings)
    headers = {"X-OM-Api-Key": a.api_key}
    api = httpx.Client(base_url=settings.api_url, headers=headers, timeout=30)
    table = api.post("/v1/burn-tables", json={"name": "victim", "rules": {"default": {"unit": "1", "input_tokens": "1"}}})
    run = api.post("/v1/rebilling/runs", json={"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})
    funded = api.post("/v1/credits/purchase", params={"wait": "true"},
                      json={"customer_id": a.customer_id, "user_id": "victim-user", "amount": "10"})
    second = api.post("/v1/api-keys", json={"name": "second"})
    assert table.status_code == 201 and run.status_code == 202 and funded.status_code == 200, (table.text, run.text)
    return {"tenant": a, "burn_table_id": table.json()["burn_table_id"], "run_id": run.json()["run_id"],
            "wallet_id": funded.json()["wallet_id"], "key_id": second.json()["id"]}


def test_sign_in_keeps_the_key_in_a_sealed_strict_cookie(settings, tenant):
    browser = Browser(settings)
    refused = browser.http.post("/dashboard/signin", data={"api_key": "om_not-a-key"})
    assert refused.status_code == 401 and "api_key" in refused.text and "unknown or revoked" in refused.text
    response = browser.http.post("/dashboard/signin", data={"api_key": tenant.api_key})
    assert response.status_code == 303 and response.headers["location"].endswith("/dashboard/overview")
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/dashboard" in cookie
    assert tenant.api_key not in cookie and tenant.api_key not in response.headers["location"]
    page = browser.get("/dashboard/overview")
    assert page.status_code == 200 and tenant.customer_id in page.text and tenant.api_key not in page.text
    sealed = browser.http.cookies["om_dashboard"]
    forged = ("y" if sealed[0] == "x" else "x") + sealed[1:]  # one character changed, always
    tampered = httpx.get(f"{settings.api_url}/dashboard/overview", cookies={"om_dashboard": forged})
    assert tampered.status_code == 303 and tampered.headers["location"] == "/dashboard/signin"
    browser.csrf = csrf_of(page.text)
    signed_out = browser.post("/dashboard/signout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/dashboard/signin"
    assert "om_dashboard" not in browser.http.cookies and browser.get("/dashboard/overview").status_code == 303


def test_every_page_without_a_session_goes_to_sign_in(settings):
    assert len(ROUTES) >= 15, ROUTES
    concrete = {"{burn_table_id}": "bt_x", "{run_id}": "run_x", "{key_id}": "key_x"}
    for method, path in ROUTES:
        if (method, path) in PUBLIC:
            continue
        for name, value in concrete.items():
            path = path.replace(name, value)
        response = httpx.request(method, f"{settings.api_url}{path}", timeout=30)
        assert response.status_code == 303, f"{method} {path}: {response.status_code}"
        assert response.headers["location"] == "/dashboard/signin", f"{method} {path}"


def test_a_form_without_the_sessions_csrf_token_is_refused_and_does_nothing(settings, tenant):
    browser = Browser(settings, tenant.api_key)
    keys = lambda: httpx.get(f"{settings.api_url}/v1/api-keys", headers={"X-OM-Api-Key": tenant.api_key}).json()["api_keys"]  # noqa: E731
    before = len(keys())
    assert browser.post("/dashboard/api-keys", {"name": "forged"}, csrf=False).status_code == 403
    assert browser.post("/dashboard/api-keys", {"name": "forged", "csrf_token": "not-it"}, csrf=False).status_code == 403
    other = Browser(settings, tenant.api_key)  # another session of the same key: another token
    assert other.csrf != browser.csrf
    assert browser.post("/dashboard/api-keys", {"name": "forged", "csrf_token": other.csrf}, csrf=False).status_code == 403
    assert len(keys()) == before
    created = browser.post("/dashboard/api-keys", {"name": "real"})
    assert created.status_code == 200 and "shown this once" in created.text
    assert len(keys()) == before + 1


def test_a_revoked_key_ends_its_session(settings, tenant):
    headers = {"X-OM-Api-Key": tenant.api_key}
    doomed = httpx.post(f"{settings.api_url}/v1/api-keys", headers=headers, json={"name": "doomed"}).json()
    browser = Browser(settings, doomed["api_key"])
    assert browser.get("/dashboard/wallets").status_code == 200
    assert httpx.delete(f"{settings.api_url}/v1/api-keys/{doomed['id']}", headers=headers).status_code == 200
    eventually(lambda: all(browser.get("/dashboard/wallets").status_code == 303 for _ in range(6)), timeout_s=5,
               what="every API process sends the revoked key's session to sign-in")
    assert browser.get("/dashboard/overview").headers["location"] == "/dashboard/signin"


def test_another_tenants_ids_are_refused_on_every_page(settings, victim):
    """The dashboard's isolation matrix: each route that takes an id, with tenant A's id, in B's session."""
    a = victim["tenant"]
    b = Browser(settings, new_tenant(settings).api_key)
    attacks = {
        ("GET", "/dashboard/burn-tables/{burn_table_id}"): lambda: b.get(f"/dashboard/burn-tables/{victim['burn_table_id']}"),
        ("POST", "/dashboard/burn-tables/{burn_table_id}/versions"): lambda: b.post(
            f"/dashboard/burn-tables/{victim['burn_table_id']}/versions", {"rules": '{"default": {"unit": "9"}}'}),
        ("GET", "/dashboard/rebilling/{run_id}"): lambda: b.get(f"/dashboard/rebilling/{victim['run_id']}"),
        ("POST", "/dashboard/api-keys/{key_id}/revoke"): lambda: b.post(f"/dashboard/api-keys/{victim['key_id']}/revoke"),
    }
    with_ids = [route for route in ROUTES if "{" in route[1]]
    assert sorted(attacks) == with_ids, "a dashboard route takes an id: add its attack here"
    for route, attack in attacks.items():
        response = attack()
        assert response.status_code == 404, f"{route}: {response.status_code} {response.text[:300]}"
    # Pages that take no id show B's own data only, whatever A's ids B puts in the query.
    own = [b.get("/dashboard/wallets", params={"wallet": victim["wallet_id"]}), b.get("/dashboard/overview"),
           b.get("/dashboard/usage", params={"user_id": "victim-user"}), b.get("/dashboard/burn-tables"),
           b.get("/dashboard/api-keys"), b.get("/dashboard/rebilling"),
           b.get("/dashboard/usage.csv", params={"user_id": "victim-user"})]
    for response in own:
        assert response.status_code == 200, response.text[:300]
        for secret in (a.customer_id, victim["burn_table_id"], victim["run_id"], victim["key_id"], a.api_key[:11]):
            assert secret not in response.text.replace(victim["wallet_id"], ""), f"{response.url} shows {secret}"
    # A's burn table was not changed, A's key still works.
    headers = {"X-OM-Api-Key": a.api_key}
    versions = httpx.get(f"{settings.api_url}/v1/burn-tables/{victim['burn_table_id']}", headers=headers).json()["versions"]
    keys = httpx.get(f"{settings.api_url}/v1/api-keys", headers=headers).json()["api_keys"]
    assert len(versions) == 1 and [k["revoked_at"] for k in keys if k["id"] == victim["key_id"]] == [None]


def test_purchase_form_goes_through_the_credits_route_and_names_a_bad_field(settings, tenant):
    browser = Browser(settings, tenant.api_key)
    bad = browser.post("/dashboard/wallets/credits", {"kind": "purchase", "amount": "1.5e400"})
    assert bad.status_code == 422 and "<strong>amount</strong>" in bad.text
    good = browser.post("/dashboard/wallets/credits", {"kind": "grant", "amount": "12.5", "user_id": "u-form",
                                                        "expires_at": "2099-01-01T00:00"})
    assert good.status_code == 200 and "Grant applied" in good.text and "balance now 12.5" in good.text, good.text[-2000:]
    assert "expires 2099-01-01 00:00:00 UTC" in good.text


def test_usage_csv_exports_the_filtered_rows(settings, tenant):
    headers = {"X-OM-Api-Key": tenant.api_key}
    api = httpx.Client(base_url=settings.api_url, headers=headers, timeout=30)
    assert api.post("/v1/burn-tables", json={"name": "t", "rules": {"default": {"input_tokens": "1", "output_tokens": "2"}}}).status_code == 201
    api.post("/v1/credits/purchase", params={"wait": "true"}, json={"customer_id": tenant.customer_id, "amount": "100000"})
    eventually(lambda: api.get(f"/v1/customers/{tenant.customer_id}/credits").json()["balance"] == "100000", timeout_s=20,
               what="the purchase in the balances view")
    events = [token_event(user_id="ana", feature_id="chat", model="gpt-4o", input_tokens=10, output_tokens=5),
              token_event(user_id="ana", feature_id="chat", model="gpt-4o", input_tokens=20, output_tokens=5),
              token_event(user_id="bo", feature_id="search", model="gpt-4o-mini", input_tokens=7, output_tokens=1)]
    assert api.post("/v1/events/ingest", json={"events": events}).json()["accepted"] == 3
    browser = Browser(settings, tenant.api_key)
    today = datetime.now(timezone.utc).date()
    period = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}

    def exported(**filters) -> list[dict]:
        response = browser.get("/dashboard/usage.csv", params={**period, **filters})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        return list(csv.DictReader(io.StringIO(response.text)))

    rows = eventually(lambda: (r := exported()) and sum(int(x["events"]) for x in r) == 3 and r, timeout_s=30,
                      what="three events in the usage rollups")
    assert {(r["user_id"], r["feature_id"], r["model"], r["events"], r["input_tokens"], r["credits"]) for r in rows} == {
        ("ana", "chat", "gpt-4o", "2", "30", "50"), ("bo", "search", "gpt-4o-mini", "1", "7", "9")}
    only_bo = exported(user_id="bo")
    assert [(r["user_id"], r["credits"]) for r in only_bo] == [("bo", "9")]
    assert exported(model="no-such-model") == []
    page = browser.get("/dashboard/usage", params={**period, "feature_id": "chat"})
    assert page.status_code == 200 and "2 events, 50 credits" in page.text
    bad = browser.get("/dashboard/usage", params={"from": "yesterday"})
    assert bad.status_code == 422 and "<strong>from</strong>" in bad.text


def test_dlq_lists_and_retries_the_tenants_records_only(settings):
    owner, other = new_tenant(settings), new_tenant(settings)
    event = token_event(model="model-nobody-prices")  # no burn table, no price to derive one from: parked as no_rate
    ingest = httpx.post(f"{settings.api_url}/v1/events/ingest", headers={"X-OM-Api-Key": owner.api_key},
                        json={"events": [event]}, timeout=30)
    assert ingest.json()["accepted"] == 1
    browser = Browser(settings, owner.api_key)

    def listed() -> str | None:
        found = re.search(r'name="id" value="([0-9]+:[0-9]+)"', page := browser.get("/dashboard/dlq").text)
        return found and event["event_id"] in page and found.group(1)

    dlq_id = eventually(listed, timeout_s=30, what="the event in the tenant's DLQ page")
    intruder = Browser(settings, other.api_key)
    assert event["event_id"] not in intruder.get("/dashboard/dlq").text
    refused = intruder.post("/dashboard/dlq/retry", {"id": dlq_id})
    assert refused.status_code == 200 and "no such DLQ record for this tenant" in refused.text
    assert browser.post("/dashboard/dlq/retry").status_code == 422
    retried = browser.post("/dashboard/dlq/retry", {"id": dlq_id})
    assert retried.status_code == 200 and re.search(rf"<code>{dlq_id}</code></td><td>retried<", retried.text), retried.text[-3000:]


def sse(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        name = re.search(r"^event: (.*)$", block, re.M).group(1)
        events.append((name, orjson.loads(re.search(r"^data: (.*)$", block, re.M).group(1))))
    return events


def test_the_sandbox_streams_a_refused_event_to_the_dlq_and_a_field_error_at_the_edge(settings, tenant):
    browser = Browser(settings, tenant.api_key)  # no burn table, and no provider price to derive the default from
    form = {"kind": "text", "user_id": "u-sandbox", "provider": "openai", "model": "model-nobody-prices",
            "input_tokens": "10", "output_tokens": "2"}
    response = browser.post("/dashboard/sandbox/events", form)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    stages = {data["stage"]: data for name, data in events if name == "stage"}
    assert events[0][0] == "event" and events[-1][0] == "done" and list(stages) == [
        "edge", "kafka", "rated", "wallet", "clickhouse", "ledger"], events
    assert stages["edge"]["ok"] and stages["kafka"]["ok"] and stages["kafka"]["detail"]["topic"] == "usage.events"
    assert not stages["rated"]["ok"] and "sent to the DLQ: no_rate" in stages["rated"]["detail"]["reason"]
    assert all(stages[s]["detail"]["reason"] == "not reached: the event went to the DLQ" for s in ("wallet", "clickhouse", "ledger"))
    assert stages["rated"]["ms"] < 20_000  # not the 30 s deadline

    bad = sse(browser.post("/dashboard/sandbox/events", {**form, "input_tokens": "12x"}))
    edge = [data for name, data in bad if name == "stage"]
    assert len(edge) == 1 and not edge[0]["ok"] and edge[0]["detail"]["body"]["rejected"][0]["field"] == "input_tokens"


def test_a_form_posted_from_another_site_is_refused_and_pages_forbid_framing(settings, tenant):
    browser = Browser(settings, tenant.api_key)
    elsewhere = {"Origin": "https://attacker.example"}
    forged = browser.http.post("/dashboard/api-keys", data={"csrf_token": browser.csrf, "name": "x"}, headers=elsewhere)
    assert forged.status_code == 403
    login = httpx.post(f"{settings.api_url}/dashboard/signin", data={"api_key": tenant.api_key}, headers=elsewhere)
    assert login.status_code == 403 and "set-cookie" not in login.headers  # no login CSRF either
    same = browser.http.post("/dashboard/api-keys", data={"csrf_token": browser.csrf, "name": "y"},
                             headers={"Origin": settings.api_url})
    assert same.status_code == 200
    page = browser.get("/dashboard/overview")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    missing = browser.get("/dashboard/no-such-page")  # an HTML page, not the API's JSON error
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "no page /dashboard/no-such-page" in missing.text
    api = httpx.get(f"{settings.api_url}/v1/no-such-route")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"  # the API keeps its JSON errors


def test_burn_table_forms_name_every_problem_of_the_rules(settings, tenant):
    browser = Browser(settings, tenant.api_key)
    not_json = browser.post("/dashboard/burn-tables", {"name": "t", "rules": "{default: 1"})
    assert not_json.status_code == 422 and "<strong>rules</strong>: not JSON" in not_json.text
    assert "{default: 1" in not_json.text  # what was typed is kept
    wrong = browser.post("/dashboard/burn-tables", {"name": "t", "rules": '{"default": {"input_mtok": "1"}, "gpt-4o": {"unit": "-1"}}'})
    assert wrong.status_code == 422
    for field in ("rules.default.input_mtok", "rules.gpt-4o.unit"):
        assert f"<strong>{field}</strong>" in wrong.text, wrong.text[-3000:]
    # A JSON number with more digits than a float holds arrives exactly.
    created = browser.post("/dashboard/burn-tables", {"name": "t", "rules": '{"default": {"unit": 0.100000000000000001}}'})
    assert created.status_code == 303 and "/dashboard/burn-tables/bt_" in created.headers["location"]
    table = browser.get(created.headers["location"])
    assert table.status_code == 200 and "1 (in force)" in table.text
    table_id = created.headers["location"].rsplit("/", 1)[1]
    rules = httpx.get(f"{settings.api_url}/v1/burn-tables/{table_id}", headers={"X-OM-Api-Key": tenant.api_key}).json()
    assert rules["versions"][0]["rules"]["default"]["unit"] == "0.100000000000000001", rules  # a float would be 0.1
