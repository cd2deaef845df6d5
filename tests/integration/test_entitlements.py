"""Entitlement checks against the real stack: decisions from the API's in-memory views (catalog,
wallet.balances), holds written to wallet.commands and applied by the wallet agent, settled by a
usage event naming them, released, or lapsed at their expiry; validation and tenant isolation.

The stack runs two API processes, each with its own views and its own pending holds. A test that
needs one process (its pending holds) sends its requests on one keep-alive connection
(`httpx.Client`); reads that may hit the other process go through `eventually`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from confluent_kafka import Producer
from psycopg_pool import ConnectionPool

from openmonetize import wallet_ids
from schemas.registry import SchemaRegistry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from tests.conftest import eventually, unique
from tests.integration.support import new_tenant, token_event

RULES = {"gpt-4o": {"input_tokens": 2.5, "output_tokens": 10.0, "per_unit": 1000}}  # 1000 in + 100 out = 3.5


@pytest.fixture
def api(settings, tenant):
    with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30) as client:
        yield client


def check(api, tenant, estimate, wait=False, **fields) -> httpx.Response:
    body = {"customer_id": tenant.customer_id, "user_id": "u1", "estimate": estimate, **fields}
    return api.post("/v1/entitlements/check", json=body, params={"wait": "true"} if wait else {})


def decided(api, tenant, estimate, **fields) -> dict:
    answer = check(api, tenant, estimate, **fields)
    assert answer.status_code == 200, answer.text
    return answer.json()


def buy(api, tenant, amount, **wallet) -> None:
    answer = api.post("/v1/credits/purchase", params={"wait": "true"},
                      json={"customer_id": tenant.customer_id, "amount": amount, **wallet})
    assert answer.status_code == 200 and answer.json()["status"] == "applied", answer.text


def wallet(settings, tenant, **which) -> dict:
    """A fresh connection each time: either API process may answer."""
    answer = httpx.get(f"{settings.api_url}/v1/customers/{tenant.customer_id}/credits", params=which,
                       headers={"X-OM-Api-Key": tenant.api_key}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def shows(settings, tenant, balance, reserved, **which) -> dict:
    def current():
        found = wallet(settings, tenant, **which)
        return (found["balance"], found["reserved"]) == (balance, reserved) and found

    return eventually(current, timeout_s=15, what=f"{which or 'customer wallet'} at balance {balance}, reserved {reserved}")


def burn_table(api, rules=RULES) -> None:
    effective = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    answer = api.post("/v1/burn-tables", json={"name": "standard", "rules": rules, "effective_from": effective})
    assert answer.status_code == 201, answer.text


def everywhere(settings, tenant, condition, what):
    """`condition(answer)` true for a check answered by each API process (fresh connections)."""
    def holds():
        with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30) as fresh:
            return all(condition(fresh) for _ in range(6))

    return eventually(holds, timeout_s=15, what=what)


# --- decisions -------------------------------------------------------------------------------
def test_allowed_up_to_the_exact_available_credits_and_denied_beyond(settings, api, tenant):
    buy(api, tenant, "10.5", user_id="u1")
    exact = decided(api, tenant, {"credits": "10.5"})
    assert exact == {"allowed": True, "wallet_id": wallet_ids.user_wallet(tenant.customer_id, "u1"), "required": "10.5",
                     "available": "10.5", "balance": "10.5", "reserved": "0", "policy": "allow_overdraft",
                     "estimated_credits": "10.5", "reason": None, "actions": []}
    over = decided(api, tenant, {"credits": "10.500000000001"})
    assert (over["allowed"], over["reason"], over["required"], over["available"]) == (
        False, "insufficient_credits", "10.500000000001", "10.5")
    assert over["actions"] == [{"type": "top_up", "credits": "0.000000000001",
                                "message": "buy at least 0.000000000001 credits (POST /v1/credits/purchase) for this wallet"}]
    assert decided(api, tenant, {"credits": 0.000000000001})["allowed"] is True


def test_the_answer_names_the_tenant_policy(api, tenant):
    assert decided(api, tenant, {"credits": 1})["policy"] == "allow_overdraft"
    assert api.put(f"/v1/customers/{tenant.customer_id}/settings", json={"unfunded_policy": "reject"}).status_code == 200
    eventually(lambda: decided(api, tenant, {"credits": 1})["policy"] == "reject", timeout_s=10, what="the new policy")


def test_a_usage_estimate_is_rated_like_rating_calculate(api, tenant):
    burn_table(api)
    buy(api, tenant, "3.5", user_id="u1")
    usage = {"event_type": "TOKEN_USAGE", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100}
    # Each API process's catalog has the new table within a second: wait for it where we ask.
    rated = eventually(lambda: (r := api.post("/v1/rating/calculate", json=usage)).status_code == 200 and r.json(),
                       timeout_s=10, what="the burn table in force for rating")
    answer = eventually(lambda: decided(api, tenant, usage), timeout_s=10, what="the burn table in force")
    assert answer["required"] == rated["credits"].rstrip("0").rstrip(".") == "3.5"
    assert (answer["allowed"], answer["rule_key"], answer["burn_table_version"]) == (True, "gpt-4o", 1)
    as_max = decided(api, tenant, {**{k: v for k, v in usage.items() if k != "output_tokens"}, "max_output_tokens": 101})
    assert (as_max["required"], as_max["allowed"]) == ("3.51", False)


def test_the_check_looks_at_the_wallet_the_event_will_be_charged_to(settings, api, tenant):
    customer = tenant.customer_id
    buy(api, tenant, 100, team_id="team-a")
    buy(api, tenant, 5, user_id="alice")
    pooled = decided(api, tenant, {"credits": 50}, user_id="bob", team_id="team-a")  # bob has no wallet: the team's
    assert (pooled["wallet_id"], pooled["allowed"]) == (wallet_ids.team_wallet(customer, "team-a"), True)
    own = decided(api, tenant, {"credits": 50}, user_id="alice", team_id="team-a")  # hers exists, though poorer
    assert (own["wallet_id"], own["allowed"], own["available"]) == (wallet_ids.user_wallet(customer, "alice"), False, "5")
    nobody = decided(api, tenant, {"credits": 1}, user_id="carol")
    assert (nobody["wallet_id"], nobody["allowed"], nobody["available"]) == (wallet_ids.customer_wallet(customer), False, "0")

    assert api.put(f"/v1/customers/{customer}/settings", json={"routing_order": ["team", "user", "customer"]}).status_code == 200
    team_first = eventually(
        lambda: (found := decided(api, tenant, {"credits": 50}, user_id="alice", team_id="team-a"))["allowed"] and found,
        timeout_s=10, what="the new routing order")
    assert team_first["wallet_id"] == wallet_ids.team_wallet(customer, "team-a")
    assert decided(api, tenant, {"credits": 5}, user_id="alice")["wallet_id"] == wallet_ids.user_wallet(customer, "alice")


def test_the_charged_wallet_is_the_checked_one(settings, api, tenant):
    """The usage agent routes by the same rule: a reservation on the team wallet is settled there."""
    burn_table(api)
    buy(api, tenant, 100, team_id="team-a")
    answer = decided(api, tenant, {"credits": 10}, user_id="bob", team_id="team-a", reserve=True)
    assert answer["wallet_id"] == wallet_ids.team_wallet(tenant.customer_id, "team-a")
    event = token_event(user_id="bob", team_id="team-a", input_tokens=1000, output_tokens=100,
                        reservation_id=answer["reservation_id"])
    assert api.post("/v1/events/ingest", json={"events": [event]}).status_code == 202
    shows(settings, tenant, "96.5", "0", team_id="team-a")


# --- holds -----------------------------------------------------------------------------------
def test_a_hold_lowers_available_and_the_usage_event_naming_it_settles_it(settings, api, tenant):
    burn_table(api)
    buy(api, tenant, 100, user_id="u1")
    held = decided(api, tenant, {"credits": "30"}, reserve=True, feature_id="chat")
    assert (held["allowed"], held["reservation_status"], held["feature_id"], held["available"]) == (True, "accepted", "chat", "100")
    assert held["reservation_id"].startswith("res_")
    expires = datetime.fromisoformat(held["reservation_expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=290) < expires - datetime.now(timezone.utc) <= timedelta(seconds=300)  # ENTITLEMENT_RESERVE_TTL_S

    after = shows(settings, tenant, "100", "30", user_id="u1")
    assert after["available"] == "70"
    everywhere(settings, tenant, lambda c: not decided(c, tenant, {"credits": "70.000000000001"})["allowed"],
               "every process to see the hold")
    assert decided(api, tenant, {"credits": "70"})["allowed"]

    event = token_event(user_id="u1", input_tokens=1000, output_tokens=100, reservation_id=held["reservation_id"])
    assert api.post("/v1/events/ingest", json={"events": [event]}).status_code == 202
    settled = shows(settings, tenant, "96.5", "0", user_id="u1")  # the actual 3.5 debited, the hold gone
    assert settled["available"] == "96.5"


def test_a_second_check_in_the_same_process_sees_the_first_hold_before_the_agent_applies_it(settings, api, tenant):
    buy(api, tenant, 100, user_id="u1")
    first = decided(api, tenant, {"credits": 60}, reserve=True)
    second = decided(api, tenant, {"credits": 60}, reserve=True)  # same connection: same process, at once
    assert first["allowed"] and not second["allowed"]
    assert second["available"] == "40" and "reservation_id" not in second
    assert decided(api, tenant, {"credits": 40}, reserve=True)["allowed"]
    shows(settings, tenant, "100", "100", user_id="u1")


def test_concurrent_waited_holds_across_processes_never_hold_more_than_the_wallet_has(settings, api, tenant):
    buy(api, tenant, 100, user_id="u1")

    def one(_):
        with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30) as fresh:
            return decided(fresh, tenant, {"credits": 30}, wait=True, reserve=True)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    granted = [a for a in answers if a["allowed"]]
    # Never more than the wallet has. Holds the agent applied in one batch that over-commit the
    # wallet are all refused (no process knows the others' amounts), so a burst may get fewer.
    assert len(granted) <= 3, answers
    assert all(a["reservation_status"] == "applied" for a in granted), answers
    assert {a.get("reason") for a in answers if not a["allowed"]} <= {"insufficient_credits", "contended"}
    shows(settings, tenant, "100", str(30 * len(granted)), user_id="u1")
    if len(granted) < 3:  # what the burst left is there for the next hold
        assert decided(api, tenant, {"credits": 30}, wait=True, reserve=True)["reservation_status"] == "applied"


def test_a_release_drops_the_hold(settings, api, tenant):
    buy(api, tenant, 100, user_id="u1")
    held = decided(api, tenant, {"credits": 40}, wait=True, reserve=True)
    assert held["reservation_status"] == "applied"
    shows(settings, tenant, "100", "40", user_id="u1")
    released = api.post("/v1/entitlements/release", params={"wait": "true"}, json={
        "customer_id": tenant.customer_id, "reservation_id": held["reservation_id"], "wallet_id": held["wallet_id"]})
    assert released.status_code == 200, released.text
    assert {k: released.json()[k] for k in ("status", "reserved", "available", "balance")} == {
        "status": "applied", "reserved": "0", "available": "100", "balance": "100"}

    again = decided(api, tenant, {"credits": 25}, reserve=True)
    shows(settings, tenant, "100", "25", user_id="u1")
    by_user = httpx.post(f"{settings.api_url}/v1/entitlements/release", headers={"X-OM-Api-Key": tenant.api_key},
                         json={"customer_id": tenant.customer_id, "reservation_id": again["reservation_id"], "user_id": "u1"})
    assert by_user.status_code == 202 and by_user.json()["status"] == "accepted", by_user.text
    shows(settings, tenant, "100", "0", user_id="u1")
    unknown = api.post("/v1/entitlements/release", json={"customer_id": tenant.customer_id, "reservation_id": "res_x",
                                                         "wallet_id": held["wallet_id"]})
    assert unknown.status_code == 202  # a no-op: settled, released or lapsed holds look the same


def test_a_hold_lapses_at_its_expiry_without_the_wallet_being_touched(settings, api, tenant):
    buy(api, tenant, 100, user_id="u1")
    held = decided(api, tenant, {"credits": 50}, reserve=True, reserve_ttl_s=2)
    assert held["allowed"]
    shows(settings, tenant, "100", "50", user_id="u1")
    # The API process that wrote the hold asks the agent to lapse it at its expiry (about 1.5 s later).
    shows(settings, tenant, "100", "0", user_id="u1")
    eventually(lambda: decided(api, tenant, {"credits": 100})["allowed"], timeout_s=5, what="the credits available again")


def test_the_wallet_agent_lapses_a_hold_only_when_the_wallet_is_next_touched(settings, api, tenant):
    """What the agent implements (billing/wallet.expire when a wallet's records are applied), for
    a hold no API process watches: written straight to wallet.commands."""
    buy(api, tenant, 100, user_id="u1")
    spec = topics(settings)
    with ConnectionPool(settings.database_url, min_size=1, max_size=1) as pool:
        codecs = worker_codecs.register(SchemaRegistry(pool), spec)
    wallet_id = wallet_ids.user_wallet(tenant.customer_id, "u1")
    now = datetime.now(timezone.utc)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})
    producer.produce(spec.wallet_commands.name, key=wallet_id.encode(), value=codecs.wallet_command.encode({
        "command_id": unique("res"), "customer_id": tenant.customer_id, "wallet_id": wallet_id, "kind": "reserve",
        "amount": Decimal(20), "expires_at": now + timedelta(seconds=1), "priority": None, "event_id": None,
        "run_id": None, "reservation_id": None, "reason": None, "requested_at": now, "metadata": None}))
    assert producer.flush(30) == 0
    shows(settings, tenant, "100", "20", user_id="u1")
    eventually(lambda: datetime.now(timezone.utc) > now + timedelta(seconds=2.5), timeout_s=5)
    assert wallet(settings, tenant, user_id="u1")["reserved"] == "20"  # lapsed, but nothing touched the wallet
    buy(api, tenant, 1, user_id="u1")
    shows(settings, tenant, "101", "0", user_id="u1")


def test_a_hold_with_an_idempotency_key_is_made_once(settings, api, tenant):
    buy(api, tenant, 100, user_id="u1")
    first = check(api, tenant, {"credits": 30}, reserve=True, idempotency_key="order-1")
    again = httpx.post(f"{settings.api_url}/v1/entitlements/check",
                       headers={"X-OM-Api-Key": tenant.api_key, "Idempotency-Key": "order-1"},
                       json={"customer_id": tenant.customer_id, "user_id": "u1", "estimate": {"credits": "30.0"}, "reserve": True})
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    shows(settings, tenant, "100", "30", user_id="u1")
    other = check(api, tenant, {"credits": 31}, reserve=True, idempotency_key="order-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


def test_a_denied_check_holds_nothing(settings, api, tenant):
    buy(api, tenant, 10, user_id="u1")
    denied = decided(api, tenant, {"credits": 11}, reserve=True, idempotency_key="k-denied")
    assert not denied["allowed"] and "reservation_id" not in denied
    buy(api, tenant, 1, user_id="u1")
    assert wallet(settings, tenant, user_id="u1")["reserved"] == "0"
    retried = decided(api, tenant, {"credits": 11}, reserve=True, idempotency_key="k-denied")  # re-checked, not replayed
    assert retried["allowed"] and retried["reservation_id"]


# --- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize("body,status,code,field", [
    (b"{", 400, "malformed_json", None),
    (b"[]", 422, "invalid_request", None),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": "-1"}}', 422, "invalid_amount", "estimate.credits"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": 1e400}}', 422, "invalid_amount", "estimate.credits"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": "NaN"}}', 422, "invalid_amount", "estimate.credits"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": true}}', 422, "invalid_amount", "estimate.credits"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {}}', 422, "invalid_request", "estimate"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"event_type": "TOKEN_USAGE", "model": "gpt-4o",'
     b' "input_tokens": "12"}}', 422, "invalid_request", "estimate.input_tokens"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"event_type": "TOKEN_USAGE", "model": "gpt-4o",'
     b' "input_tokens": -5}}', 422, "invalid_request", "estimate.input_tokens"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"event_type": "TOKEN_USAGE", "model": "gpt-4o",'
     b' "input_tokens": 99999999999999999999999}}', 422, "invalid_request", "estimate.input_tokens"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"event_type": "TOKEN_USAGE", "model": "gpt-4o",'
     b' "input_token": 5}}', 422, "invalid_request", "estimate.input_token"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": 1}, "limit": 5}', 422, "invalid_request", "limit"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": 1}, "reserve": "yes"}', 422, "invalid_request", "reserve"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"credits": 1}, "reserve": true, "reserve_ttl_s": 86400}',
     422, "invalid_request", "reserve_ttl_s"),
    (b'{"customer_id": "C", "user_id": "", "estimate": {"credits": 1}}', 422, "invalid_request", "user_id"),
    (b'{"customer_id": "C", "estimate": {"credits": 1}}', 422, "invalid_request", "user_id"),
    (b'{"customer_id": "C", "user_id": "u1", "estimate": {"event_type": "TOKEN_USAGE", "model": "no-such-model",'
     b' "input_tokens": 5}}', 422, "no_rate", "estimate"),
])
def test_bad_requests_are_refused_naming_the_field(api, tenant, body, status, code, field):
    burn_table(api)
    answer = api.post("/v1/entitlements/check", content=body.replace(b'"C"', f'"{tenant.customer_id}"'.encode()),
                      headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error.get("field") == field, error


def test_another_tenant_and_missing_keys_are_refused(settings, api, tenant):
    other = new_tenant(settings)
    body = {"customer_id": other.customer_id, "user_id": "u1", "estimate": {"credits": 1}}
    foreign = api.post("/v1/entitlements/check", json=body)
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "foreign_customer"
    release = {"customer_id": other.customer_id, "reservation_id": "res_x", "user_id": "u1"}
    assert api.post("/v1/entitlements/release", json=release).status_code == 403
    for headers in ({}, {"X-OM-Api-Key": "om_not_a_key"}):
        refused = httpx.post(f"{settings.api_url}/v1/entitlements/check", json=body, headers=headers, timeout=30)
        assert refused.status_code == 401 and refused.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
    # Another tenant's wallet cannot be named for a release, even with one's own customer_id.
    buy(api, tenant, 1, user_id="u1")
    with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": other.api_key}, timeout=30) as theirs:
        stolen = theirs.post("/v1/entitlements/release", json={
            "customer_id": other.customer_id, "reservation_id": "res_x",
            "wallet_id": wallet_ids.user_wallet(tenant.customer_id, "u1")})
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "unknown_wallet"


def test_a_release_of_a_wallet_that_does_not_exist_opens_nothing(settings, api, tenant):
    answer = api.post("/v1/entitlements/release", json={"customer_id": tenant.customer_id, "reservation_id": "res_x",
                                                        "user_id": "nobody"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_wallet"
    assert api.post("/v1/entitlements/release", json={"customer_id": tenant.customer_id, "reservation_id": "r"}).status_code == 422


def test_openapi_and_metrics(settings, api, tenant):
    spec = httpx.get(f"{settings.api_url}/openapi.json", timeout=30).json()
    operation = spec["paths"]["/v1/entitlements/check"]["post"]
    assert {"200", "400", "401", "403", "409", "422", "503"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"customer_id", "user_id"} <= set(body["required"])
    assert body["oneOf"] == [{"required": ["estimate"]}, {"required": ["action"]}]  # the seed's `action` or ours
    action_type = body["properties"]["action"]["properties"]["type"]
    assert "enum" not in action_type and "token_usage" in action_type["description"]  # any case: no enum can say it
    assert body["properties"]["estimate"]["properties"]["credits"]["type"] == ["number", "string"]
    assert "/v1/entitlements/release" in spec["paths"]
    decided(api, tenant, {"credits": 1})
    metrics = httpx.get(f"{settings.api_url}/metrics", timeout=30).text
    assert 'openmonetize_entitlement_check_seconds_bucket{le="0.001",outcome="denied"}' in metrics


@pytest.mark.parametrize("action, status, field", [
    ({"type": "TOKEN_USAGE", "model": "gpt-4o", "estimated_input_tokens": 1000, "estimated_output_tokens": 100}, 200, None),
    ({"type": "token_usage", "model": "gpt-4o", "estimated_input_tokens": -1}, 422, "action.estimated_input_tokens"),
    ({"type": "token_usage", "model": "gpt-4o"}, 422, "action"),  # no units
    ({"type": "teleport", "estimated_tokens": 1}, 422, "action.type"),
])
def test_the_seed_action_types_in_any_case_and_errors_naming_the_action_field(api, tenant, action, status, field):
    burn_table(api)
    body = {"customer_id": tenant.customer_id, "user_id": "u1", "action": action}
    answer = eventually(lambda: (a := api.post("/v1/entitlements/check", json=body)).json().get("error", {}).get(
        "code") != "no_rate" and a, timeout_s=15, what="the burn table in the API's catalog")
    assert answer.status_code == status, answer.text
    if field is None:
        assert (answer.json()["required"], answer.json()["rule_key"]) == ("3.5", "gpt-4o")
    else:
        assert answer.json()["error"]["field"] == field
