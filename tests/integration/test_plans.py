"""Plans and subscriptions against the real stack: validation, the first grant on subscribing,
the scheduler (`openmonetize plans run-due`) granting each period once however often and
concurrently it runs, rollover by expiry, cancellation, feature gating in entitlement checks,
and Idempotency-Key replays and conflicts on the new POSTs."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest

from tests.conftest import eventually


def call(settings, tenant, method, path, body=None, key=None, **params):
    headers = {"X-OM-Api-Key": tenant.api_key, **({"Idempotency-Key": key} if key else {})}
    return httpx.request(method, f"{settings.api_url}{path}", json=body, params=params, headers=headers, timeout=30)


def created(response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def plan(settings, tenant, **fields) -> dict:
    return created(call(settings, tenant, "POST", "/v1/plans", {"name": "pro", "credits": 10, **fields}))


def credits(settings, tenant, **wallet) -> dict:
    read = call(settings, tenant, "GET", f"/v1/customers/{tenant.customer_id}/credits", **wallet)
    assert read.status_code == 200, read.text
    return read.json()


def run_due(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "openmonetize", "plans", "run-due", "--json", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def test_a_plan_is_validated_field_by_field(settings, tenant):
    refused = [
        ({"credits": -5}, "invalid_amount", "credits"),
        ({"credits": 0}, "invalid_amount", "credits"),
        ({"credits": "1e40"}, "invalid_amount", "credits"),
        ({"credits": "1.0000000000001"}, "invalid_amount", "credits"),
        ({"period": "fortnight"}, "invalid_request", "period"),
        ({"period_count": 0}, "invalid_request", "period_count"),
        ({"rollover": "forever"}, "invalid_request", "rollover"),
        ({"rollover": "capped"}, "invalid_request", "rollover_cap"),
        ({"rollover": "capped", "rollover_cap": -1}, "invalid_amount", "rollover_cap"),
        ({"rollover_cap": 5}, "invalid_request", "rollover_cap"),
        ({"features": ["bad id!"]}, "invalid_request", "features[0]"),
        ({"colour": "red"}, "invalid_request", "colour"),
    ]
    for fields, code, field in refused:
        answer = call(settings, tenant, "POST", "/v1/plans", {"name": "p", "credits": 10, **fields})
        assert answer.status_code == 422, (fields, answer.text)
        assert (answer.json()["error"]["code"], answer.json()["error"].get("field")) == (code, field), (fields, answer.text)
    # Once the tenant declares its features, a plan naming another is refused.
    settings_path = f"/v1/customers/{tenant.customer_id}/settings"
    assert call(settings, tenant, "PUT", settings_path, {"features": ["chat", "images"]}).status_code == 200
    answer = call(settings, tenant, "POST", "/v1/plans", {"name": "p", "credits": 10, "excluded_features": ["chat", "video"]})
    assert answer.status_code == 422, answer.text
    assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == ("unknown_feature", "excluded_features[1]")
    assert call(settings, tenant, "GET", "/v1/plans").json() == {"plans": []}


def test_plans_are_created_listed_read_and_replayed_by_key(settings, tenant):
    body = {"name": "team", "credits": "250.5", "period": "week", "period_count": 2, "rollover": "capped",
            "rollover_cap": 50, "features": ["chat"], "priority": 3}
    first = call(settings, tenant, "POST", "/v1/plans", body, key="plan-1")
    made = created(first)
    assert {k: made[k] for k in ("credits", "period", "period_count", "rollover", "rollover_cap", "features")} == {
        "credits": "250.5", "period": "week", "period_count": 2, "rollover": "capped", "rollover_cap": "50",
        "features": ["chat"]}
    again = call(settings, tenant, "POST", "/v1/plans", {**body, "credits": 250.5}, key="plan-1")  # the same amount
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == made
    other = call(settings, tenant, "POST", "/v1/plans", {**body, "credits": 251}, key="plan-1")
    assert other.status_code == 409, other.text
    assert other.json()["error"] == {"code": "idempotency_conflict", "message": other.json()["error"]["message"],
                                     "field": "Idempotency-Key"}
    assert [p["plan_id"] for p in call(settings, tenant, "GET", "/v1/plans").json()["plans"]] == [made["plan_id"]]
    assert call(settings, tenant, "GET", f"/v1/plans/{made['plan_id']}").json() == made
    missing = call(settings, tenant, "GET", "/v1/plans/plan_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "plan_not_found"


def test_subscribing_grants_the_first_period_at_once(settings, tenant):
    pro = plan(settings, tenant, credits=40)
    body = {"plan_id": pro["plan_id"], "user_id": "u-1"}
    sub = created(call(settings, tenant, "POST", "/v1/subscriptions", body, key="sub-1"))
    assert (sub["status"], sub["periods_granted"], sub["wallet_id"]) == (
        "active", 1, f"w:{tenant.customer_id}:user:u-1")
    starts = datetime.fromisoformat(sub["starts_at"])
    end = datetime.fromisoformat(sub["next_grant_at"])
    assert (end.year * 12 + end.month) - (starts.year * 12 + starts.month) == 1  # a month later
    wallet = eventually(lambda: (w := credits(settings, tenant, user_id="u-1"))["balance"] == "40" and w,
                        timeout_s=10, what="the plan's grant in the balance")
    assert [(g["kind"], g["granted"], datetime.fromisoformat(g["expires_at"])) for g in wallet["grants"]] == [
        ("grant", "40", end)]  # rollover none: the credits lapse at the period's end
    replay = call(settings, tenant, "POST", "/v1/subscriptions", body, key="sub-1")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == sub  # the answer given, its first grant included
    conflict = call(settings, tenant, "POST", "/v1/subscriptions", {**body, "user_id": "u-2"}, key="sub-1")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    twice = call(settings, tenant, "POST", "/v1/subscriptions", body)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_subscribed", twice.text
    for wrong, field in (({"plan_id": pro["plan_id"]}, "user_id"),
                         ({"plan_id": pro["plan_id"], "user_id": "a", "team_id": "b"}, "user_id"),
                         ({"plan_id": pro["plan_id"], "user_id": "u", "starts_at": "2026-01-01T00:00:00"}, "starts_at")):
        answer = call(settings, tenant, "POST", "/v1/subscriptions", wrong)
        assert answer.status_code == 422 and answer.json()["error"]["field"] == field, answer.text
    assert call(settings, tenant, "POST", "/v1/subscriptions", {"plan_id": "plan_nope", "user_id": "u"}).status_code == 404
    listed = call(settings, tenant, "GET", "/v1/subscriptions", user_id="u-1").json()
    assert [s["subscription_id"] for s in listed["subscriptions"]] == [sub["subscription_id"]]


def test_the_scheduler_grants_a_period_once_run_concurrently_and_again(settings, tenant):
    """Two scheduler processes at once, then a third: one grant. The subscription starts
    tomorrow, so only runs told it is tomorrow (--now) see it due, not the API's own."""
    starts = datetime.now(timezone.utc) + timedelta(days=1)
    full = plan(settings, tenant, credits=7, rollover="full")
    sub = created(call(settings, tenant, "POST", "/v1/subscriptions",
                       {"plan_id": full["plan_id"], "team_id": "t-1", "starts_at": iso(starts)}))
    assert sub["periods_granted"] == 0
    now = ["--now", iso(starts + timedelta(minutes=1)), "--customer", tenant.customer_id]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_due(*now), range(2)))
    runs.append(run_due(*now))
    assert sum(r["granted"] for r in runs) == 1, runs
    assert sum(r["periods"] for r in runs) == 1, runs
    read = call(settings, tenant, "GET", f"/v1/subscriptions/{sub['subscription_id']}").json()
    assert read["periods_granted"] == 1 and len(read["grants"]) == 1, read
    wallet = eventually(lambda: (w := credits(settings, tenant, team_id="t-1"))["balance"] == "7" and w,
                        timeout_s=10, what="the scheduler's grant in the team's balance")
    assert [(g["id"], g["granted"], g["expires_at"]) for g in wallet["grants"]] == [
        (read["grants"][0]["command_ids"][0], "7", None)]  # rollover full: never expires


def test_rollover_none_lapses_at_the_period_end_and_capped_carries_the_cap(settings, tenant):
    """Daily plans whose first period started a day ago less 3 s: it ends in 3 s."""
    starts = iso(datetime.now(timezone.utc) - timedelta(days=1) + timedelta(seconds=3))
    none = plan(settings, tenant, credits=5, period="day", rollover="none")
    capped = plan(settings, tenant, credits=10, period="day", rollover="capped", rollover_cap=3)
    for plan_, user in ((none, "lapses"), (capped, "carries")):
        sub = created(call(settings, tenant, "POST", "/v1/subscriptions",
                           {"plan_id": plan_["plan_id"], "user_id": user, "starts_at": starts}))
        assert sub["periods_granted"] == 1, sub
    eventually(lambda: credits(settings, tenant, user_id="carries")["balance"] == "10", timeout_s=10, what="10 granted")
    carried = credits(settings, tenant, user_id="carries")
    assert sorted(g["granted"] for g in carried["grants"]) == ["3", "7"]
    eventually(lambda: credits(settings, tenant, user_id="lapses")["balance"] == "0", timeout_s=15,
               what="the rollover-none grant lapsed at the period's end")
    after = eventually(lambda: (w := credits(settings, tenant, user_id="carries"))["balance"] == "3" and w,
                       timeout_s=15, what="only the capped rollover left")
    assert [g["granted"] for g in after["grants"]] == ["3"]


def test_cancelling_stops_future_grants(settings, tenant):
    monthly = plan(settings, tenant, credits=2)
    sub = created(call(settings, tenant, "POST", "/v1/subscriptions", {"plan_id": monthly["plan_id"], "user_id": "c"}))
    path = f"/v1/subscriptions/{sub['subscription_id']}/cancel"
    cancelled = call(settings, tenant, "POST", path, key="cancel-1")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["next_grant_at"]) == ("cancelled", None)
    replay = call(settings, tenant, "POST", path, key="cancel-1")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == cancelled.json()
    assert call(settings, tenant, "POST", path).json()["cancelled_at"] == cancelled.json()["cancelled_at"]
    later = iso(datetime.now(timezone.utc) + timedelta(days=70))
    assert run_due("--now", later, "--customer", tenant.customer_id)["periods"] == 0
    read = call(settings, tenant, "GET", f"/v1/subscriptions/{sub['subscription_id']}").json()
    assert (read["periods_granted"], len(read["grants"])) == (1, 1)
    # The wallet may subscribe again once cancelled.
    created(call(settings, tenant, "POST", "/v1/subscriptions", {"plan_id": monthly["plan_id"], "user_id": "c"}))
    assert call(settings, tenant, "POST", "/v1/subscriptions/sub_nope/cancel").status_code == 404


def check(settings, tenant, feature, user="g", **fields) -> dict:
    body = {"customer_id": tenant.customer_id, "user_id": user, "feature_id": feature, "estimate": {"credits": 1},
            **fields}
    answer = call(settings, tenant, "POST", "/v1/entitlements/check", body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_features_are_gated_by_the_tenant_and_by_the_plan(settings, tenant):
    basic = plan(settings, tenant, credits=100, features=["chat", "search"], excluded_features=["search"])
    plus = plan(settings, tenant, credits=100, excluded_features=["video"])
    created(call(settings, tenant, "POST", "/v1/subscriptions", {"plan_id": basic["plan_id"], "user_id": "g"}))
    created(call(settings, tenant, "POST", "/v1/subscriptions", {"plan_id": plus["plan_id"], "team_id": "squad"}))
    denied = eventually(lambda: (a := check(settings, tenant, "images"))["reason"] == "feature_not_in_plan" and a,
                        timeout_s=10, what="the subscription in the catalog")
    assert denied["allowed"] is False
    assert denied["actions"][0]["type"] == "upgrade" and denied["actions"][0]["plans"] == [plus["plan_id"]]
    assert check(settings, tenant, "search")["reason"] == "feature_not_in_plan"  # excluded beats included
    assert check(settings, tenant, "chat")["allowed"] is True
    assert check(settings, tenant, "images", team_id="squad")["allowed"] is True  # the team's plan includes it
    assert check(settings, tenant, "video", user="x", team_id="squad")["reason"] == "feature_not_in_plan"
    # no subscription: no plan gating (denied only for want of credits: "nobody" has none)
    assert check(settings, tenant, "images", user="nobody")["reason"] == "insufficient_credits"

    path = f"/v1/customers/{tenant.customer_id}/settings"
    assert call(settings, tenant, "PUT", path, {"disabled_features": ["chat"]}).json()["disabled_features"] == ["chat"]
    off = eventually(lambda: (a := check(settings, tenant, "chat", user="nobody"))["reason"] == "feature_disabled" and a,
                     timeout_s=10, what="the tenant's settings in the catalog")
    assert off["allowed"] is False and off["actions"][0]["type"] == "contact_admin"
    assert check(settings, tenant, "search", user="nobody")["reason"] == "insufficient_credits"
    assert call(settings, tenant, "PUT", path, {"disabled_features": []}).status_code == 200
    eventually(lambda: check(settings, tenant, "chat")["allowed"], timeout_s=10, what="chat back on")


@pytest.mark.parametrize("path, body, changed", [
    ("/v1/burn-tables", {"name": "std", "rules": {"default": {"unit": 1}}}, {"name": "other"}),
    ("/v1/customers/{cus}/users", {"user_id": "ann"}, {"user_id": "bob"}),
    ("/v1/customers/{cus}/teams", {"team_id": "red"}, {"name": "Red"}),
    ("/v1/api-keys", {"name": "ci"}, {"name": "cd"}),
    ("/v1/rebilling/runs", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
     {"to": "2026-01-03T00:00:00Z"}),
], ids=["burn-tables", "users", "teams", "api-keys", "rebilling"])
def test_creating_posts_replay_an_idempotency_key_and_refuse_it_for_another_request(settings, tenant, path, body,
                                                                                     changed):
    path = path.format(cus=tenant.customer_id)
    first = call(settings, tenant, "POST", path, body, key="same")
    assert first.status_code in (201, 202), first.text
    with ThreadPoolExecutor(2) as pool:  # a retry racing another: both get the first answer
        again = list(pool.map(lambda _: call(settings, tenant, "POST", path, body, key="same"), range(2)))
    for answer in again:
        assert answer.status_code == first.status_code and answer.headers["Idempotent-Replayed"] == "true"
        expected = {**first.json(), "api_key": None} if "api_key" in first.json() else first.json()
        assert answer.json() == expected  # an API key's secret is never stored, so never replayed
    conflict = call(settings, tenant, "POST", path, {**body, **changed}, key="same")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict", conflict.text


def test_a_burn_table_version_is_created_once_per_key(settings, tenant):
    table = created(call(settings, tenant, "POST", "/v1/burn-tables", {"name": "t", "rules": {"default": {"unit": 1}}}))
    path = f"/v1/burn-tables/{table['burn_table_id']}/versions"
    versions = {call(settings, tenant, "POST", path, {"rules": {"default": {"unit": 2}}}, key="v2").json()["version"]
                for _ in range(3)}
    assert versions == {2}
    assert len(call(settings, tenant, "GET", f"/v1/burn-tables/{table['burn_table_id']}").json()["versions"]) == 2
    rating = call(settings, tenant, "POST", "/v1/rating/calculate", {"event_type": "CUSTOM", "unit_type": "x",
                                                                    "quantity": 1}, key="pure")
    assert rating.status_code in (200, 422), rating.text  # accepted and ignored: rating writes nothing


def test_a_run_that_dies_after_sending_is_repeated_and_granted_once(settings, tenant):
    """The grant is acknowledged by Kafka but the run dies before recording the period (its
    transaction rolls back): the next run sends the same command again, and the wallet agent
    applies it once."""
    from openmonetize.plans import scheduler

    starts = datetime.now(timezone.utc) + timedelta(days=2)
    once = plan(settings, tenant, credits=4, rollover="full")
    sub = created(call(settings, tenant, "POST", "/v1/subscriptions",
                       {"plan_id": once["plan_id"], "user_id": "crash", "starts_at": iso(starts)}))
    send = scheduler.sender_for(settings)
    sent: list[str] = []

    def send_then_die(commands):
        send(commands)
        sent.extend(c["command_id"] for c in commands)
        raise scheduler.SendError("the process died after Kafka's acknowledgement")

    try:
        at = starts + timedelta(seconds=1)
        died = scheduler.run_due(settings.database_url, send_then_die, at, customer_id=tenant.customer_id)
        assert (died.periods, died.failed) == (0, [sub["subscription_id"]])
        again = scheduler.run_due(settings.database_url, send, at, customer_id=tenant.customer_id)
        assert (again.periods, again.granted) == (1, 1)
    finally:
        send.close()
    read = call(settings, tenant, "GET", f"/v1/subscriptions/{sub['subscription_id']}").json()
    assert read["grants"][0]["command_ids"] == sent  # the same command, sent twice
    wallet = eventually(lambda: (w := credits(settings, tenant, user_id="crash"))["version"] >= 1 and w, timeout_s=10,
                        what="the grant applied")
    # A later command lands after both copies: the wallet shows the grant once.
    bought = call(settings, tenant, "POST", "/v1/credits/purchase",
                  {"customer_id": tenant.customer_id, "user_id": "crash", "amount": 1}, wait="true")
    assert bought.status_code == 200, bought.text
    assert (bought.json()["balance"], bought.json()["version"]) == ("5", 2), (wallet, bought.text)
