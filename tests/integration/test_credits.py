"""Credits routes against the real stack: purchase, grant and consume through wallet.commands
and the wallet agent, balances read back from the API's wallet.balances view, idempotency keys
in Postgres, validation and tenant isolation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.support import new_tenant


def post(settings, tenant, path, body, key=None, wait=False, **headers):
    headers = {"X-OM-Api-Key": tenant.api_key, **headers}
    if key is not None:
        headers["Idempotency-Key"] = key
    params = {"wait": "true"} if wait else {}
    return httpx.post(f"{settings.api_url}{path}", json=body, params=params, headers=headers, timeout=30)


def credits(settings, tenant, customer_id=None, **wallet):
    return httpx.get(
        f"{settings.api_url}/v1/customers/{customer_id or tenant.customer_id}/credits",
        params=wallet, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30,
    )


def read_at(settings, tenant, version, **wallet) -> dict:
    """The wallet once it shows `version`: the API process that answers a read may not be the one
    that saw the write, and each process's view follows wallet.balances on its own."""
    def current():
        read = credits(settings, tenant, **wallet)
        assert read.status_code == 200, read.text
        return read.json()["version"] >= version and read.json()

    return eventually(current, timeout_s=10, what=f"version {version} of {wallet or 'the customer wallet'}")


def body(tenant, amount, **fields):
    return {"customer_id": tenant.customer_id, "amount": amount, **fields}


def applied(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "applied", response.text
    return response.json()


def test_a_purchase_waited_for_is_applied_and_read_back(settings, tenant):
    answer = applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 100, user_id="u-42"), wait=True))
    assert answer["wallet_id"] == f"w:{tenant.customer_id}:user:u-42"
    assert (answer["balance"], answer["available"], answer["reserved"], answer["version"]) == ("100", "100", "0", 1)
    assert answer["command_id"].startswith("cmd_")

    wallet = read_at(settings, tenant, 1, user_id="u-42")
    assert {k: wallet[k] for k in ("customer_id", "wallet_id", "balance", "reserved", "available", "version")} == {
        "customer_id": tenant.customer_id, "wallet_id": answer["wallet_id"],
        "balance": "100", "reserved": "0", "available": "100", "version": 1,
    }
    [lot] = wallet["grants"]
    assert {k: lot[k] for k in ("id", "kind", "granted", "remaining", "expires_at", "priority")} == {
        "id": answer["command_id"], "kind": "purchase", "granted": "100", "remaining": "100",
        "expires_at": None, "priority": 0,
    }
    assert lot["granted_at"] and wallet["updated_at"]


def test_a_purchase_is_accepted_at_once_and_the_balance_follows(settings, tenant):
    answer = post(settings, tenant, "/v1/credits/purchase", body(tenant, "12.345678901234", team_id="research"))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"command_id": answer.json()["command_id"], "status": "accepted",
                             "wallet_id": f"w:{tenant.customer_id}:team:research"}
    assert read_at(settings, tenant, 1, team_id="research")["balance"] == "12.345678901234"
    customer = post(settings, tenant, "/v1/credits/purchase", body(tenant, "3"))
    assert customer.json()["wallet_id"] == f"w:{tenant.customer_id}:customer"
    assert read_at(settings, tenant, 1)["balance"] == "3"
    assert read_at(settings, tenant, 1, team_id="research")["balance"] == "12.345678901234"


def test_a_grant_with_an_expiry_and_priority_is_listed_in_burn_order(settings, tenant):
    expires = (datetime.now(timezone.utc) + timedelta(days=30)).replace(microsecond=0)
    applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 50, user_id="u1"), wait=True))
    grant = applied(post(settings, tenant, "/v1/credits/grant",
                         body(tenant, 20, user_id="u1", expires_at=expires.isoformat(), priority=3,
                              reason="black friday"), wait=True))
    assert grant["balance"] == "70"
    lots = read_at(settings, tenant, 2, user_id="u1")["grants"]
    assert [(lot["kind"], lot["granted"], lot["priority"]) for lot in lots] == [("grant", "20", 3), ("purchase", "50", 0)]
    assert lots[0]["id"] == grant["command_id"]
    assert datetime.fromisoformat(lots[0]["expires_at"].replace("Z", "+00:00")) == expires

    spent = applied(post(settings, tenant, "/v1/credits/consume", body(tenant, 25, user_id="u1"), wait=True))
    assert spent["balance"] == "45"
    lots = read_at(settings, tenant, 3, user_id="u1")["grants"]
    assert [(lot["kind"], lot["remaining"]) for lot in lots] == [("purchase", "45")]  # the expiring grant burned first


def test_consume_lowers_the_balance_and_never_overdraws(settings, tenant):
    applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 10, user_id="u1"), wait=True))
    spent = applied(post(settings, tenant, "/v1/credits/consume",
                         body(tenant, "2.5", user_id="u1", reason="manual correction"), wait=True))
    assert (spent["balance"], spent["available"]) == ("7.5", "7.5")
    assert read_at(settings, tenant, 2, user_id="u1")["balance"] == "7.5"

    too_much = post(settings, tenant, "/v1/credits/consume", body(tenant, 100, user_id="u1"))
    assert too_much.status_code == 202, too_much.text  # accepted; the wallet agent refuses it (usage.dlq)
    # The wallet's commands apply in order: once a later purchase shows, the consume was judged.
    later = applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 1, user_id="u1"), wait=True))
    assert later["balance"] == "8.5"


def test_a_replayed_idempotency_key_answers_the_first_body_and_credits_once(settings, tenant):
    first = post(settings, tenant, "/v1/credits/purchase", body(tenant, 10, user_id="u1"), key="order-1", wait=True)
    applied(first)
    again = post(settings, tenant, "/v1/credits/purchase", body(tenant, "10.000", user_id="u1"), key="order-1", wait=True)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    in_body = post(settings, tenant, "/v1/credits/purchase",
                   body(tenant, 10, user_id="u1", idempotency_key="order-1"), wait=True)
    assert in_body.content == first.content

    unwaited = post(settings, tenant, "/v1/credits/grant", body(tenant, 5, user_id="u1"), key="promo-1")
    assert unwaited.status_code == 202
    assert post(settings, tenant, "/v1/credits/grant", body(tenant, 5, user_id="u1"), key="promo-1").content \
        == unwaited.content

    marker = applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 1, user_id="u1"), wait=True))
    assert marker["balance"] == "16"  # 10 once, 5 once, 1
    assert len(read_at(settings, tenant, 3, user_id="u1")["grants"]) == 3


def test_identical_requests_racing_each_other_credit_once(settings, tenant):
    def buy(_):
        return post(settings, tenant, "/v1/credits/purchase", body(tenant, 7, team_id="t1"), key="race-1")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(buy, range(6)))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert len({a.json()["command_id"] for a in answers}) == 1
    marker = applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 1, team_id="t1"), wait=True))
    assert marker["balance"] == "8"


def test_a_key_reused_for_another_request_is_a_conflict(settings, tenant):
    assert post(settings, tenant, "/v1/credits/purchase", body(tenant, 10), key="k-1").status_code == 202
    for path, other in (("/v1/credits/purchase", body(tenant, 11)),
                        ("/v1/credits/purchase", body(tenant, 10, user_id="u1")),
                        ("/v1/credits/consume", body(tenant, 10))):
        refused = post(settings, tenant, path, other, key="k-1")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "idempotency_conflict"
        assert refused.json()["error"]["field"] == "Idempotency-Key"
    # a key is the tenant's own: another tenant may use the same one
    other = new_tenant(settings)
    assert post(settings, other, "/v1/credits/purchase", body(other, 99), key="k-1").status_code == 202


def test_tenants_are_isolated(settings, tenant):
    applied(post(settings, tenant, "/v1/credits/purchase", body(tenant, 10, user_id="u1"), wait=True))
    other = new_tenant(settings)
    foreign = post(settings, other, "/v1/credits/purchase", {"customer_id": tenant.customer_id, "amount": 1})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "foreign_customer")
    assert foreign.json()["error"]["field"] == "customer_id"
    read = credits(settings, other, tenant.customer_id, user_id="u1")
    assert (read.status_code, read.json()["error"]["code"]) == (403, "foreign_customer")
    assert credits(settings, other, user_id="u1").json()["balance"] == "0"  # the same user id, another tenant
    assert read_at(settings, tenant, 1, user_id="u1")["balance"] == "10"

    url = settings.api_url
    for request in (
        lambda h: httpx.post(f"{url}/v1/credits/purchase", json=body(tenant, 1), headers=h),
        lambda h: httpx.post(f"{url}/v1/credits/consume", json=body(tenant, 1), headers=h),
        lambda h: httpx.get(f"{url}/v1/customers/{tenant.customer_id}/credits", headers=h),
    ):
        missing = request({})
        assert (missing.status_code, missing.json()["error"]["code"]) == (401, "missing_api_key")
        wrong = request({"X-OM-Api-Key": "om_" + "x" * 43})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")


def test_a_wallet_never_funded_reads_zeros(settings, tenant):
    read = credits(settings, tenant, user_id="nobody")
    assert read.status_code == 200, read.text
    assert read.json() == {
        "customer_id": tenant.customer_id, "wallet_id": f"w:{tenant.customer_id}:user:nobody", "balance": "0",
        "reserved": "0", "available": "0", "grants": [], "version": 0, "updated_at": None,
    }


def test_bad_requests_name_the_field(settings, tenant):
    url = f"{settings.api_url}/v1/credits/purchase"
    headers = {"X-OM-Api-Key": tenant.api_key}
    malformed = httpx.post(url, content=b'{"amount": 1', headers=headers)
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "malformed_json")
    not_an_object = httpx.post(url, content=b"[1]", headers=headers)
    assert not_an_object.status_code == 422

    cases = [
        (body(tenant, True), "amount", "invalid_amount"),
        (body(tenant, None), "amount", "invalid_amount"),
        (body(tenant, [1]), "amount", "invalid_amount"),
        (body(tenant, "ten"), "amount", "invalid_amount"),
        (body(tenant, "NaN"), "amount", "invalid_amount"),
        (body(tenant, "Infinity"), "amount", "invalid_amount"),
        (body(tenant, 0), "amount", "invalid_amount"),
        (body(tenant, -5), "amount", "invalid_amount"),
        (body(tenant, "1e30"), "amount", "invalid_amount"),
        (body(tenant, 10**40), "amount", "invalid_amount"),
        (body(tenant, "0.0000000000001"), "amount", "invalid_amount"),
        (body(tenant, 1, user_id=5), "user_id", "invalid_request"),
        (body(tenant, 1, user_id=""), "user_id", "invalid_request"),
        (body(tenant, 1, user_id="u1", team_id="t1"), "team_id", "invalid_request"),
        (body(tenant, 1, priority="high"), "priority", "invalid_request"),
        (body(tenant, 1, priority=-1), "priority", "invalid_request"),
        (body(tenant, 1, expires_at="2020-01-01T00:00:00Z"), "expires_at", "invalid_request"),
        (body(tenant, 1, expires_at="2030-01-01T00:00:00"), "expires_at", "invalid_request"),
        (body(tenant, 1, expires_at="soon"), "expires_at", "invalid_request"),
        (body(tenant, 1, amout=2), "amout", "invalid_request"),
        ({"amount": 1}, "customer_id", "invalid_request"),
        ({"customer_id": tenant.customer_id}, "amount", "invalid_request"),
    ]
    for payload, field, code in cases:
        refused = httpx.post(url, json=payload, headers=headers)
        assert refused.status_code == 422, (payload, refused.text)
        assert (refused.json()["error"]["field"], refused.json()["error"]["code"]) == (field, code), (payload, refused.text)

    for raw in (b"0.0000000000001", b"1" + b"0" * 5000):  # a JSON number too precise; one too long to decode
        refused = httpx.post(url, content=b'{"customer_id": "%s", "amount": %s}' % (tenant.customer_id.encode(), raw),
                             headers=headers)
        assert (refused.status_code, refused.json()["error"]["field"]) == (422, "amount"), refused.text
    consume_expiry = post(settings, tenant, "/v1/credits/consume", body(tenant, 1, expires_at="2030-01-01T00:00:00Z"))
    assert (consume_expiry.status_code, consume_expiry.json()["error"]["field"]) == (422, "expires_at")
    bad_key = post(settings, tenant, "/v1/credits/purchase", body(tenant, 1, idempotency_key="a"), key="b")
    assert (bad_key.status_code, bad_key.json()["error"]["field"]) == (422, "idempotency_key")
    both = credits(settings, tenant, user_id="u1", team_id="t1")
    assert (both.status_code, both.json()["error"]["field"]) == (422, "team_id")
    empty = credits(settings, tenant, user_id="")
    assert empty.status_code == 422
    assert credits(settings, tenant).json()["version"] == 0  # nothing above reached the wallet


def test_the_openapi_spec_documents_the_credits_routes(settings):
    spec = httpx.get(f"{settings.api_url}/openapi.json").json()
    purchase = spec["paths"]["/v1/credits/purchase"]["post"]
    assert {"200", "202", "400", "401", "403", "409", "422", "503"} <= set(purchase["responses"])
    body_schema = purchase["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["properties"]["amount"]["type"] == ["number", "string"]
    assert body_schema["additionalProperties"] is False and "customer_id" in body_schema["required"]
    assert {p["name"] for p in purchase["parameters"]} >= {"wait", "Idempotency-Key"}
    read = spec["paths"]["/v1/customers/{customer_id}/credits"]["get"]
    returned = read["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(returned["properties"]) == {"customer_id", "wallet_id", "balance", "reserved", "available", "grants",
                                           "version", "updated_at"}


# --- Kafka down: a second API process whose broker is a closed port -------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_without_kafka(settings):
    port = _free_port()
    env = {
        **os.environ, "OM_ENV_FILE": "/dev/null", "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_URL": "",
        "API_WORKERS": "1", "DATABASE_URL": settings.database_url, "KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",
        "KAFKA_PRODUCER_TIMEOUT_MS": "1500", "INGEST_RETRY_AFTER_S": "7", "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "openmonetize", "run", "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200, what="the second API")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_kafka_down_is_503_with_retry_after_and_the_retry_with_the_key_applies_once(settings, tenant, api_without_kafka):
    payload = body(tenant, 4, user_id="u1")
    headers = {"X-OM-Api-Key": tenant.api_key, "Idempotency-Key": "retry-1"}

    def attempt():
        answer = httpx.post(f"{api_without_kafka}/v1/credits/purchase", json=payload, headers=headers, timeout=30)
        return answer if answer.json()["error"]["code"] != "wallet_schemas_unavailable" else None

    refused = eventually(attempt, what="the second API's wallet schemas")
    assert refused.status_code == 503, refused.text
    assert (refused.json()["error"]["code"], refused.headers["Retry-After"]) == ("kafka_unavailable", "7")
    read = httpx.get(f"{api_without_kafka}/v1/customers/{tenant.customer_id}/credits", headers=headers, timeout=30)
    assert (read.status_code, read.json()["error"]["code"], read.headers["Retry-After"]) == (503, "balances_unavailable", "7")

    # The key was claimed but never answered: the retry (here on the stack's API) writes the command, once.
    retried = applied(post(settings, tenant, "/v1/credits/purchase", payload, key="retry-1", wait=True))
    assert retried["balance"] == "4"
    assert post(settings, tenant, "/v1/credits/purchase", payload, key="retry-1").json() == retried
