"""Bad input, route by route, against the running API: never a 5xx, always a 4xx that names
the field, and a value no store can hold (schemas/storable.py) never gets in.

The sweep takes every operation of the app's OpenAPI document and sends each the classes that
used to answer 500: a NUL or a line break in every path parameter and every query parameter, a
JSON body nested 100,000 levels, a body that is not UTF-8. The cases after it are the ones the
issue found, each with the answer a client should get.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import httpx
import pytest

from api.app import create_app
from tests.conftest import unique
from tests.integration.support import now_iso, token_event

NESTED = b"[" * 100_000 + b"]" * 100_000
DEEP = b'{"a": ' + NESTED + b"}"
NOT_UTF8 = b'{"name": "\xff\xfe", "events": [{"event_id": "\xff"}]}'
YEAR_10000 = "9999-12-31T23:59:59-01:00"  # year 10000 once in UTC


def operations() -> list[tuple[str, str, dict]]:
    spec = create_app().openapi()
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


OPERATIONS = operations()


def concrete(path: str, bad: str | None = None) -> str:
    """The path with every parameter filled: with `bad` (percent-encoded) or an ordinary id."""
    return re.sub(r"\{[^}]+\}", bad or "x1", path)


@pytest.fixture
def client(settings, tenant):
    with httpx.Client(base_url=settings.api_url, headers={"X-OM-Api-Key": tenant.api_key}, timeout=30) as c:
        yield c


def test_every_route_refuses_control_characters_in_its_path_and_query(client):
    checked = 0
    for method, path, op in OPERATIONS:
        if "{" in path:
            for bad in ("x%00", "x%0A", "%FF"):
                answer = client.request(method, concrete(path, bad))
                assert answer.status_code == 400, (method, path, bad, answer.status_code, answer.text[:300])
                assert answer.json()["error"]["code"] == "invalid_path"
                checked += 1
        for parameter in (p["name"] for p in op.get("parameters", []) if p["in"] == "query"):
            answer = client.request(method, concrete(path), params={parameter: "a\x00b"})
            assert answer.status_code == 400, (method, path, parameter, answer.status_code, answer.text[:300])
            assert answer.json()["error"]["field"] == parameter
            checked += 1
    assert checked > 50, checked  # the sweep really covers the API


def test_no_route_answers_5xx_to_a_body_nested_too_deeply_or_not_utf8(client):
    failures = []
    for method, path, _op in OPERATIONS:
        if method not in ("POST", "PUT", "PATCH"):
            continue
        for body in (NESTED, DEEP, NOT_UTF8):
            answer = client.request(method, concrete(path), content=body, headers={"Content-Type": "application/json"})
            if answer.status_code >= 500:
                failures.append((method, path, body[:12], answer.status_code, answer.text[:200]))
    assert not failures, failures


@pytest.mark.parametrize("route, body, content_type", [
    ("/v1/events/ingest", b'{"events": [' + NESTED + b"]}", "application/json"),
    ("/v1/events", b"[" + NESTED + b"]", "application/cloudevents-batch+json"),
    ("/v1/burn-tables", b'{"name": "x", "rules": {"openai/gpt-4o": ' + NESTED + b"}}", "application/json"),
])
def test_deep_nesting_is_malformed_json_not_a_crash(client, route, body, content_type):
    """Where a body holds free-form JSON (an event not decoded yet, a table's rules), the decoder
    recursed into it until Python gave up: a 500."""
    answer = client.post(route, content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "malformed_json" and "too deeply" in answer.json()["error"]["message"]


@pytest.mark.parametrize("field", ["event_id", "user_id", "team_id"])
def test_a_nul_in_an_event_id_is_that_events_rejection_and_the_rest_is_accepted(client, field):
    good, bad = token_event(), token_event(**{field: "a\x00b"})
    answer = client.post("/v1/events/ingest", json={"events": [good, bad]})
    assert answer.status_code == 207, answer.text
    [rejection] = answer.json()["rejected"]
    assert (rejection["index"], rejection["field"]) == (1, field) and "control characters" in rejection["reason"]
    assert answer.json()["accepted"] == 1


def test_an_extreme_timestamp_is_one_rejection_in_a_207_not_a_500(client):
    answer = client.post("/v1/events/ingest", json={"events": [token_event(), token_event(timestamp=YEAR_10000)]})
    assert answer.status_code == 207, answer.text
    [rejection] = answer.json()["rejected"]
    assert rejection["field"] == "timestamp" and "years 1 to 9999" in rejection["reason"]


def test_cloudevents_with_a_nul_subject_is_refused_naming_it(client):
    event = {"specversion": "1.0", "id": unique("ce"), "source": "/app", "type": "dev.openmonetize.usage.token_usage",
             "subject": "u\x00", "time": now_iso(),
             "data": {"feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}}
    answer = client.post("/v1/events", json=event, headers={"Content-Type": "application/cloudevents+json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["rejected"][0]["field"] == "subject"


@pytest.mark.parametrize("idempotency_key", [None, "grant-far-future"])
def test_a_grant_that_could_never_apply_is_refused_before_it_is_acknowledged(client, tenant, idempotency_key):
    headers = {"Idempotency-Key": unique(idempotency_key)} if idempotency_key else {}
    answer = client.post("/v1/credits/grant", params={"wait": "true"}, headers=headers,
                         json={"customer_id": tenant.customer_id, "user_id": "u1", "amount": "5", "expires_at": YEAR_10000})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "expires_at" and "years 1 to 9999" in error["message"]


@pytest.mark.parametrize("body, field", [
    ({"user_id": "u\x00", "amount": "5"}, "user_id"),
    ({"user_id": "u1", "amount": "5", "reason": "r\x00"}, "reason"),
])
def test_credits_refuse_what_postgres_cannot_hold(client, tenant, body, field):
    answer = client.post("/v1/credits/purchase", json={"customer_id": tenant.customer_id, **body})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_price_overrides_and_rebilling_refuse_instants_psycopg_cannot_read_back(client):
    override = client.put("/v1/providers/pricing/openai/gpt-4o", json={"input_mtok": "1", "effective_from": YEAR_10000})
    assert override.status_code == 422, override.text
    assert override.json()["error"]["field"] == "effective_from"
    run = client.post("/v1/rebilling/runs", json={"from": "2026-12-01T00:00:00Z", "to": YEAR_10000})
    assert run.status_code == 422, run.text
    assert run.json()["error"]["field"] == "to"


def test_a_nul_anywhere_in_a_burn_table_is_refused_naming_where(client):
    answer = client.post("/v1/burn-tables", json={
        "name": "standard", "rules": {"openai/gpt-4o": {"input_tokens": "1", "output_tokens": "2", "note\x00": "x"}}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith("rules")


def test_a_forged_cursor_holding_a_nul_is_an_invalid_cursor(client, tenant):
    import base64
    import orjson

    cursor = base64.urlsafe_b64encode(orjson.dumps(["2026-12-01T00:00:00+00:00", "e\x00"])).decode().rstrip("=")
    answer = client.get(f"/v1/customers/{tenant.customer_id}/ledger", params={"cursor": cursor})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "cursor"


def test_ordinary_values_still_pass(client, tenant):
    """The checks refuse what they should and nothing more: accents, spaces and offsets pass."""
    event = token_event(user_id="josé müller", metadata={"note": "two\nlines"},
                        timestamp=datetime.now(timezone.utc).astimezone().isoformat())
    assert client.post("/v1/events/ingest", json={"events": [event]}).status_code == 202
    listed = client.get(f"/v1/customers/{tenant.customer_id}/ledger", params={"user_id": "josé müller"})
    assert listed.status_code == 200, listed.text
