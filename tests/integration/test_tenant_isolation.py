"""The security matrix: for EVERY route of the app, tenant B's valid key against tenant A's ids
is refused (403 or 404) or, where a route takes no tenant id at all, answers B's own data
only; no key and a revoked key are 401.

The routes come from the app itself (api.app.create_app), so a new route fails
`test_every_route_is_in_the_matrix` until it is given an attack here or listed as public with
its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import orjson
import pytest
from fastapi.routing import iter_route_contexts

from api.app import create_app
from api.routes import schema_registry
from tests.conftest import eventually, unique
from tests.integration.support import new_tenant, token_event

PUBLIC = {
    ("GET", "/health"): "liveness probe: answers {status: ok}, no data",
    ("GET", "/ready"): "readiness probe: the state of the dependencies, no tenant data",
    ("GET", "/metrics"): "Prometheus scrape: counters labelled by route template and status, no tenant ids",
    ("GET", "/openapi.json"): "the API's OpenAPI document",
    ("GET", "/docs"): "the API's documentation page",
    ("GET", "/docs/oauth2-redirect"): "part of the documentation page",
    ("GET", "/redoc"): "the API's documentation page",
}
# Outside API keys by design (api/routes/schema_registry.py): Confluent clients of customers'
# producers read it without our keys; its writes take the operator credential instead
# (test_schema_registry_auth.py). It holds Avro schemas, no tenant data.
REGISTRY = {(method, route.path) for route in schema_registry.router.routes for method in route.methods}


def app_routes() -> list[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(create_app().routes):
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return sorted(found)


ROUTES = app_routes()
# The dashboard's HTML pages authenticate by session cookie, not by key header, and act through
# the routes below: tests/integration/test_dashboard.py holds their own isolation matrix
# (every page without a session goes to sign-in; another tenant's ids are refused).
DASHBOARD = [route for route in ROUTES if route[1].startswith("/dashboard")]
AUTHENTICATED = [route for route in ROUTES if route not in PUBLIC and route not in REGISTRY and route not in DASHBOARD]


@dataclass
class Victim:
    """Tenant A and the things it owns."""

    customer_id: str
    api_key: str
    key_id: str
    burn_table_id: str
    price_model: str  # a model only A has a price override for
    run_id: str = ""  # A's rebilling run
    plan_id: str = ""  # A's plan, created with the Idempotency-Key `victim-plan`
    subscription_id: str = ""  # A's user's subscription to it
    user_id: str = "victim-user"
    team_id: str = "victim-team"

    def ids(self) -> list[str]:
        return [self.customer_id, self.key_id, self.burn_table_id, self.price_model, self.run_id, self.plan_id,
                self.subscription_id]


@dataclass
class Attack:
    """One request; `expect` 'refused' (403 or 404) or 'own' (2xx, none of A's ids in the answer)."""

    method: str
    path: str
    json: object = None
    content: bytes | None = None
    params: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    expect: str = "refused"


def attacks(a: Victim, b_customer_id: str) -> dict[tuple[str, str], list[Attack]]:
    """Per route (method, template): how tenant B tries to reach A's data through it."""
    c, u, t = f"/v1/customers/{a.customer_id}", a.user_id, a.team_id
    own = f"/v1/customers/{b_customer_id}"  # B's own path, with ids that only A has
    credits = {"customer_id": a.customer_id, "user_id": u, "amount": "1"}
    cloudevent = {
        "specversion": "1.0", "id": unique("ce"), "type": "dev.openmonetize.usage.token_usage",
        "source": "https://app.example.com", "subject": u, "time": datetime.now(timezone.utc).isoformat(),
        "datacontenttype": "application/json",
        "data": {"feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
                 "customer_id": a.customer_id},
    }
    return {
        ("POST", "/v1/events/ingest"): [Attack("POST", "/v1/events/ingest",
                                               json={"events": [token_event(user_id=u, customer_id=a.customer_id)]})],
        ("POST", "/v1/events"): [Attack("POST", "/v1/events", content=orjson.dumps(cloudevent),
                                        headers={"Content-Type": "application/cloudevents+json"})],
        ("POST", "/v1/burn-tables"): [Attack("POST", "/v1/burn-tables", json={
            "name": "stolen", "customer_id": a.customer_id, "rules": {"default": {"unit": "0.1"}}})],
        ("GET", "/v1/burn-tables"): [Attack("GET", "/v1/burn-tables", expect="own")],
        ("GET", "/v1/burn-tables/{burn_table_id}"): [Attack("GET", f"/v1/burn-tables/{a.burn_table_id}")],
        ("POST", "/v1/burn-tables/{burn_table_id}/versions"): [
            Attack("POST", f"/v1/burn-tables/{a.burn_table_id}/versions", json={"rules": {"default": {"unit": "1"}}})],
        ("GET", "/v1/providers/pricing"): [
            Attack("GET", "/v1/providers/pricing", params={"provider": "openai", "model": a.price_model}, expect="own")],
        ("PUT", "/v1/providers/pricing/{provider}/{model:path}"): [
            Attack("PUT", f"/v1/providers/pricing/openai/{a.price_model}",
                   json={"input_mtok": "9", "customer_id": a.customer_id})],
        ("POST", "/v1/rating/calculate"): [Attack("POST", "/v1/rating/calculate", json={
            "event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o", "input_tokens": 1,
            "output_tokens": 1, "customer_id": a.customer_id})],
        ("GET", "/v1/customers/{customer_id}/settings"): [Attack("GET", f"{c}/settings")],
        ("PUT", "/v1/customers/{customer_id}/settings"): [
            Attack("PUT", f"{c}/settings", json={"unfunded_policy": "overdraw"})],
        ("POST", "/v1/credits/purchase"): [Attack("POST", "/v1/credits/purchase", json=credits)],
        ("POST", "/v1/credits/grant"): [Attack("POST", "/v1/credits/grant", json=credits)],
        ("POST", "/v1/credits/consume"): [Attack("POST", "/v1/credits/consume", json=credits)],
        ("GET", "/v1/customers/{customer_id}/credits"): [Attack("GET", f"{c}/credits", params={"user_id": u})],
        ("POST", "/v1/entitlements/check"): [Attack("POST", "/v1/entitlements/check", json={
            "customer_id": a.customer_id, "user_id": u, "estimate": {"credits": "1"}, "reserve": True})],
        ("POST", "/v1/entitlements/release"): [Attack("POST", "/v1/entitlements/release", json={
            "customer_id": a.customer_id, "reservation_id": "res_victim", "user_id": u})],
        ("GET", "/v1/customers/{customer_id}/ledger"): [Attack("GET", f"{c}/ledger")],
        ("GET", "/v1/dlq"): [Attack("GET", "/v1/dlq", expect="own")],  # only B's parked records
        # A record that is not B's fails as if it did not exist (tests/integration/test_first_events.py).
        ("POST", "/v1/dlq/retry"): [Attack("POST", "/v1/dlq/retry", json={"ids": ["0:0"]}, expect="own")],
        ("POST", "/v1/api-keys"): [Attack("POST", "/v1/api-keys", json={"name": "mine"}, expect="own")],
        ("GET", "/v1/api-keys"): [Attack("GET", "/v1/api-keys", expect="own")],
        ("DELETE", "/v1/api-keys/{key_id}"): [Attack("DELETE", f"/v1/api-keys/{a.key_id}")],
        ("POST", "/v1/customers/{customer_id}/users"): [Attack("POST", f"{c}/users", json={"user_id": "intruder"})],
        ("GET", "/v1/customers/{customer_id}/users"): [Attack("GET", f"{c}/users")],
        ("GET", "/v1/customers/{customer_id}/users/{user_id}"): [
            Attack("GET", f"{c}/users/{u}"), Attack("GET", f"{own}/users/{u}")],
        ("POST", "/v1/customers/{customer_id}/teams"): [Attack("POST", f"{c}/teams", json={"team_id": "intruders"})],
        ("GET", "/v1/customers/{customer_id}/teams"): [Attack("GET", f"{c}/teams")],
        ("GET", "/v1/customers/{customer_id}/teams/{team_id}"): [
            Attack("GET", f"{c}/teams/{t}"), Attack("GET", f"{own}/teams/{t}")],
        ("PUT", "/v1/customers/{customer_id}/teams/{team_id}/members/{user_id}"): [
            Attack("PUT", f"{c}/teams/{t}/members/{u}"), Attack("PUT", f"{own}/teams/{t}/members/{u}")],
        ("DELETE", "/v1/customers/{customer_id}/teams/{team_id}/members/{user_id}"): [
            Attack("DELETE", f"{c}/teams/{t}/members/{u}"), Attack("DELETE", f"{own}/teams/{t}/members/{u}")],
        ("GET", "/v1/reports/usage"): [Attack("GET", "/v1/reports/usage", expect="own")],
        ("POST", "/v1/rebilling/runs"): [Attack("POST", "/v1/rebilling/runs", json={
            "customer_id": a.customer_id, "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})],
        ("GET", "/v1/rebilling/runs/{run_id}"): [Attack("GET", f"/v1/rebilling/runs/{a.run_id}")],
        ("POST", "/v1/plans"): [
            Attack("POST", "/v1/plans", json={"name": "stolen", "credits": 1, "customer_id": a.customer_id}),
            # A's idempotency key is A's: B using the same key creates B's own plan, never replays A's
            Attack("POST", "/v1/plans", json={"name": "victim", "credits": 5}, headers={"Idempotency-Key": "victim-plan"},
                   expect="own")],
        ("GET", "/v1/plans"): [Attack("GET", "/v1/plans", expect="own")],
        ("GET", "/v1/plans/{plan_id}"): [Attack("GET", f"/v1/plans/{a.plan_id}")],
        ("POST", "/v1/subscriptions"): [
            Attack("POST", "/v1/subscriptions", json={"plan_id": a.plan_id, "user_id": "intruder"}),
            Attack("POST", "/v1/subscriptions", json={"plan_id": a.plan_id, "user_id": u, "customer_id": a.customer_id})],
        ("GET", "/v1/subscriptions"): [Attack("GET", "/v1/subscriptions", params={"plan_id": a.plan_id}, expect="own"),
                                       Attack("GET", "/v1/subscriptions", expect="own")],
        ("GET", "/v1/subscriptions/{subscription_id}"): [Attack("GET", f"/v1/subscriptions/{a.subscription_id}")],
        ("POST", "/v1/subscriptions/{subscription_id}/cancel"): [
            Attack("POST", f"/v1/subscriptions/{a.subscription_id}/cancel")],
    }


@dataclass
class World:
    a: Victim
    b_customer_id: str
    b_key: str
    b_revoked_key: str
    attacks: dict[tuple[str, str], list[Attack]]


def send(settings, attack: Attack, api_key: str | None) -> httpx.Response:
    headers = {**attack.headers, **({"X-OM-Api-Key": api_key} if api_key else {})}
    return httpx.request(attack.method, f"{settings.api_url}{attack.path}", json=attack.json, content=attack.content,
                         params=attack.params, headers=headers, timeout=30)


def as_a(settings, a, method, path, headers=None, **kwargs) -> httpx.Response:
    response = httpx.request(method, f"{settings.api_url}{path}", headers={"X-OM-Api-Key": a.api_key, **(headers or {})},
                             timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response


@pytest.fixture(scope="module")
def world(settings) -> World:
    victim, attacker = new_tenant(settings), new_tenant(settings)
    c = f"/v1/customers/{victim.customer_id}"
    table = as_a(settings, victim, "POST", "/v1/burn-tables", json={
        "name": "victim", "customer_id": victim.customer_id, "rules": {"default": {"unit": "0.5"}}}).json()
    a = Victim(victim.customer_id, victim.api_key, victim.key_id, table["burn_table_id"], unique("victim-model"))
    as_a(settings, victim, "PUT", f"/v1/providers/pricing/openai/{a.price_model}", json={"input_mtok": "1.234567"})
    as_a(settings, victim, "POST", f"{c}/users", json={"user_id": a.user_id})
    as_a(settings, victim, "POST", f"{c}/teams", json={"team_id": a.team_id})
    as_a(settings, victim, "PUT", f"{c}/teams/{a.team_id}/members/{a.user_id}")
    as_a(settings, victim, "POST", "/v1/credits/purchase", params={"wait": "true"},
         json={"customer_id": victim.customer_id, "user_id": a.user_id, "amount": "10"})
    as_a(settings, victim, "POST", "/v1/api-keys")  # A has two keys: only the tenant check can refuse B's DELETE
    a.run_id = as_a(settings, victim, "POST", "/v1/rebilling/runs", json={
        "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}).json()["run_id"]
    a.plan_id = as_a(settings, victim, "POST", "/v1/plans", headers={"Idempotency-Key": "victim-plan"},
                     json={"name": "victim", "credits": 5}).json()["plan_id"]
    a.subscription_id = as_a(settings, victim, "POST", "/v1/subscriptions", json={
        "plan_id": a.plan_id, "user_id": a.user_id}).json()["subscription_id"]
    eventually(lambda: as_a(settings, victim, "GET", "/v1/providers/pricing",
                            params={"provider": "openai", "model": a.price_model}).json()["prices"],
               timeout_s=10, what="A's price override in force")

    b_headers = {"X-OM-Api-Key": attacker.api_key}
    doomed = httpx.post(f"{settings.api_url}/v1/api-keys", headers=b_headers, timeout=30).json()
    probe = f"{settings.api_url}/v1/api-keys"
    for _ in range(10):  # cached as valid before the revocation
        assert httpx.get(probe, headers={"X-OM-Api-Key": doomed["api_key"]}, timeout=30).status_code == 200
    assert httpx.delete(f"{probe}/{doomed['id']}", headers=b_headers, timeout=30).status_code == 200
    eventually(lambda: all(httpx.get(probe, headers={"X-OM-Api-Key": doomed["api_key"]}, timeout=30).status_code == 401
                           for _ in range(10)), timeout_s=5, what="B's revoked key refused by every API process")
    return World(a, attacker.customer_id, attacker.api_key, doomed["api_key"], attacks(a, attacker.customer_id))


def test_every_route_is_in_the_matrix(world):
    missing = [route for route in AUTHENTICATED if route not in world.attacks]
    assert not missing, f"routes with no attack in the isolation matrix (add one, or a PUBLIC reason): {missing}"
    stale = [route for route in world.attacks if route not in AUTHENTICATED]
    assert not stale, f"attacks on routes the app no longer has: {stale}"
    assert not set(PUBLIC) - set(ROUTES), f"public exceptions the app no longer has: {set(PUBLIC) - set(ROUTES)}"
    assert len(AUTHENTICATED) >= 30


def route_id(route: tuple[str, str]) -> str:
    return " ".join(route)


@pytest.mark.parametrize("route", AUTHENTICATED, ids=route_id)
def test_another_tenants_ids_are_refused(settings, world, route):
    assert route in world.attacks, f"{route_id(route)} has no attack: see test_every_route_is_in_the_matrix"
    for attack in world.attacks[route]:
        response = send(settings, attack, world.b_key)
        if attack.expect == "refused":
            assert response.status_code in (403, 404), f"{attack.method} {attack.path}: {response.text}"
            assert response.json()["error"]["code"], response.text
        else:
            assert 200 <= response.status_code < 300, f"{attack.method} {attack.path}: {response.text}"
            leaked = [value for value in world.a.ids() if value in response.text]
            assert not leaked, f"{attack.method} {attack.path} shows A's {leaked}: {response.text[:500]}"


def test_a_refused_revocation_left_the_key_working(settings, world):
    keys = as_a(settings, world.a, "GET", "/v1/api-keys").json()["api_keys"]
    assert [k["revoked_at"] for k in keys if k["id"] == world.a.key_id] == [None]


@pytest.mark.parametrize("route", AUTHENTICATED, ids=route_id)
@pytest.mark.parametrize("key", ["none", "revoked"])
def test_no_key_or_a_revoked_key_is_401(settings, world, route, key):
    assert route in world.attacks, f"{route_id(route)} has no attack: see test_every_route_is_in_the_matrix"
    for attack in world.attacks[route]:
        response = send(settings, attack, None if key == "none" else world.b_revoked_key)
        assert response.status_code == 401, f"{attack.method} {attack.path}: {response.text}"
        assert response.json()["error"]["code"] == ("missing_api_key" if key == "none" else "invalid_api_key")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
