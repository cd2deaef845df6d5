"""`GET /v1/customers/{id}/ledger` against the real stack: credits commands applied by the
wallet agent, written to Postgres by the ledger sink, read back newest first, filtered and
paged with the opaque cursor."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.support import new_tenant


def ledger(settings, tenant, customer_id=None, **params) -> httpx.Response:
    return httpx.get(f"{settings.api_url}/v1/customers/{customer_id or tenant.customer_id}/ledger",
                     params=params, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30)


def entries(settings, tenant, **params) -> list[dict]:
    response = ledger(settings, tenant, **params)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


@pytest.fixture
def funded(settings, tenant) -> list[dict]:
    """Five commands applied one after the other; their entries, once all are in Postgres."""
    commands = [
        ("purchase", {"user_id": "u1", "amount": "100"}),
        ("grant", {"team_id": "t1", "amount": "50", "expires_at": "2099-01-01T00:00:00Z"}),
        ("purchase", {"amount": "12.5"}),
        ("consume", {"user_id": "u1", "amount": "7.25", "reason": "manual"}),
        ("purchase", {"user_id": "u2", "amount": "1"}),
    ]
    ids = []
    for kind, body in commands:
        answer = httpx.post(f"{settings.api_url}/v1/credits/{kind}", params={"wait": "true"},
                            json={"customer_id": tenant.customer_id, **body},
                            headers={"X-OM-Api-Key": tenant.api_key}, timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "applied", answer.text
        ids.append(answer.json()["command_id"])
    found = eventually(lambda: len(got := entries(settings, tenant)) == len(ids) and got, timeout_s=30,
                       what="the ledger sink to write the five entries")
    assert [entry["command_id"] for entry in found] == ids[::-1]  # newest first
    return found


def test_entries_come_newest_first_with_decimal_amounts(settings, tenant, funded):
    u1 = f"w:{tenant.customer_id}:user:u1"
    consume = funded[1]
    assert {k: consume[k] for k in ("wallet_id", "kind", "amount", "balance_after", "reason")} == {
        "wallet_id": u1, "kind": "consume", "amount": "-7.25", "balance_after": "92.75", "reason": "manual"}
    assert [(e["kind"], e["amount"]) for e in funded] == [
        ("purchase", "1"), ("consume", "-7.25"), ("purchase", "12.5"), ("grant", "50"), ("purchase", "100")]
    times = [datetime.fromisoformat(e["occurred_at"]) for e in funded]
    assert times == sorted(times, reverse=True)
    assert all(e["entry_id"] and e["applied_at"] for e in funded)
    body = ledger(settings, tenant).json()
    assert (body["customer_id"], body["next_cursor"]) == (tenant.customer_id, None)


def test_filters_by_wallet_user_team_kind_and_time(settings, tenant, funded):
    by_user = entries(settings, tenant, user_id="u1")
    assert [e["kind"] for e in by_user] == ["consume", "purchase"]
    assert entries(settings, tenant, wallet_id=f"w:{tenant.customer_id}:user:u1") == by_user
    assert [e["kind"] for e in entries(settings, tenant, team_id="t1")] == ["grant"]
    assert [e["amount"] for e in entries(settings, tenant, kind="purchase")] == ["1", "12.5", "100"]
    assert entries(settings, tenant, user_id="nobody") == []

    middle = funded[2]["occurred_at"]  # the customer wallet's purchase
    assert [e["amount"] for e in entries(settings, tenant, **{"from": middle})] == ["1", "-7.25", "12.5"]
    assert [e["amount"] for e in entries(settings, tenant, to=middle)] == ["50", "100"]
    assert [e["amount"] for e in entries(settings, tenant, **{"from": middle, "to": funded[1]["occurred_at"]})] == ["12.5"]


def test_pages_follow_the_cursor_to_the_end(settings, tenant, funded):
    seen, cursor, pages = [], None, 0
    while True:
        body = ledger(settings, tenant, limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += body["entries"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (funded, 3)
    first = ledger(settings, tenant, kind="purchase", limit=2).json()
    rest = ledger(settings, tenant, kind="purchase", limit=2, cursor=first["next_cursor"]).json()
    assert [e["amount"] for e in first["entries"] + rest["entries"]] == ["1", "12.5", "100"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("params, field, code", [
    ({"user_id": "u1", "team_id": "t1"}, "wallet_id", "invalid_request"),
    ({"wallet_id": "w", "user_id": "u1"}, "wallet_id", "invalid_request"),
    ({"kind": "bonus"}, "kind", "invalid_request"),
    ({"from": "2026-01-01T00:00:00"}, "from", "invalid_request"),
    ({"to": "yesterday"}, "query.to", "invalid_request"),
    ({"limit": 0}, "query.limit", "invalid_request"),
    ({"limit": 1001}, "query.limit", "invalid_request"),
    ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor", "invalid_cursor"),
    ({"cursor": "WyJub3QgYSB0aW1lIiwieCJd"}, "cursor", "invalid_cursor"),  # ["not a time","x"]
])
def test_bad_parameters_are_422_naming_the_field(settings, tenant, params, field, code):
    response = ledger(settings, tenant, **params)
    assert response.status_code == 422, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (code, field)


def test_another_tenants_ledger_is_403(settings, tenant):
    other = new_tenant(settings)
    response = ledger(settings, tenant, customer_id=other.customer_id)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "foreign_customer"
