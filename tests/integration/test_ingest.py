"""POST /v1/events/ingest against the running API and Kafka: what is accepted lands on
usage.events exactly, what is not is refused with its field and reason."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import psycopg
import pytest

from tests.conftest import eventually
from tests.integration.support import new_tenant, token_event


def post(settings, api_key: str | None, body=None, *, content: bytes | None = None, headers=None) -> httpx.Response:
    headers = dict(headers or {})
    if api_key is not None:
        headers["X-OM-Api-Key"] = api_key
    if content is not None:
        headers.setdefault("Content-Type", "application/json")
        return httpx.post(f"{settings.api_url}/v1/events/ingest", content=content, headers=headers, timeout=60)
    return httpx.post(f"{settings.api_url}/v1/events/ingest", json=body, headers=headers, timeout=60)


def ago(**delta) -> str:
    return (datetime.now(timezone.utc) - timedelta(**delta)).isoformat()


# --- accepted events land on Kafka ---------------------------------------------------------


def test_accepted_events_land_on_usage_events_with_their_fields(settings, tenant, tail):
    tokens = token_event(user_id="alice", cached_input_tokens=200, team_id="team-a", metadata={"req": "r1"})
    custom = token_event(
        user_id="bob", event_type="CUSTOM", provider=None, model=None, input_tokens=None, output_tokens=None,
        unit_type="seconds", quantity="12.123456789012", timestamp="2026-11-26T10:00:00.5+01:00",
    )
    response = post(settings, tenant.api_key, {"events": [tokens, {k: v for k, v in custom.items() if v is not None}]})

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "rejected": []}
    landed = {record["event_id"]: (key, record) for key, record in tail.wait_for(2)}
    key, record = landed[tokens["event_id"]]
    assert key == f"{tenant.customer_id}:alice"
    assert record["customer_id"] == tenant.customer_id
    assert (record["input_tokens"], record["output_tokens"], record["cached_input_tokens"]) == (1200, 300, 200)
    assert (record["team_id"], record["metadata"], record["source"]) == ("team-a", {"req": "r1"}, "http")
    assert record["timestamp"] == datetime.fromisoformat(tokens["timestamp"])
    assert record["received_at"] is not None
    key, record = landed[custom["event_id"]]
    assert key == f"{tenant.customer_id}:bob"
    assert record["quantity"] == Decimal("12.123456789012")
    assert record["unit_type"] == "seconds"
    assert record["timestamp"] == datetime(2026, 11, 26, 9, 0, 0, 500000, tzinfo=timezone.utc)


def test_bearer_authorization_works_too(settings, tenant, tail):
    response = post(settings, None, {"events": [token_event()]}, headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert response.status_code == 202, response.text
    assert len(tail.wait_for(1)) == 1


def test_mixed_batch_is_207_and_exactly_the_valid_events_land(settings, tenant, tail):
    good = [token_event(user_id=f"u{i}") for i in range(3)]
    bad_tokens = token_event(input_tokens="many")
    no_model = {k: v for k, v in token_event().items() if k != "model"}
    events = [good[0], bad_tokens, good[1], no_model, good[2]]

    response = post(settings, tenant.api_key, {"events": events})

    assert response.status_code == 207, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert body["rejected"] == [
        {"index": 1, "event_id": bad_tokens["event_id"], "field": "input_tokens", "reason": "expected int, got str"},
        {"index": 3, "event_id": no_model["event_id"], "field": "model", "reason": "required for TOKEN_USAGE events"},
    ]
    landed = sorted(record["event_id"] for _, record in tail.wait_for(3))
    assert landed == sorted(e["event_id"] for e in good)


def test_duplicate_event_ids_in_one_batch_keep_the_first(settings, tenant, tail):
    first = token_event(input_tokens=111)
    again = dict(first, input_tokens=222)
    other = token_event()

    response = post(settings, tenant.api_key, {"events": [first, again, other]})

    assert response.status_code == 207, response.text
    assert response.json()["rejected"] == [
        {"index": 1, "event_id": first["event_id"], "field": "event_id", "reason": "duplicate event_id in this batch"}
    ]
    landed = {record["event_id"]: record for _, record in tail.wait_for(2)}
    assert set(landed) == {first["event_id"], other["event_id"]}
    assert landed[first["event_id"]]["input_tokens"] == 111


# --- one invalid event: 400 naming the field and the reason --------------------------------

MAX_TOKENS = 50_000_000  # EVENT_MAX_TOKENS default; the test stack does not change it


def custom_event(**fields) -> dict:
    event = {k: v for k, v in token_event().items() if k not in ("provider", "model", "input_tokens", "output_tokens")}
    return {**event, "event_type": "CUSTOM", "unit_type": "requests", "quantity": "1", **fields}


def without(event: dict, name: str) -> dict:
    return {k: v for k, v in event.items() if k != name}


INVALID_EVENTS = {
    "string tokens": (token_event(input_tokens="100"), "input_tokens", "expected int, got str"),
    "float tokens": (token_event(output_tokens=1.5), "output_tokens", "expected int, got float"),
    "bool tokens": (token_event(input_tokens=True), "input_tokens", "expected int, got bool"),
    "TOKEN_USAGE without model": (without(token_event(), "model"), "model", "required for TOKEN_USAGE events"),
    "TOKEN_USAGE without output_tokens": (
        without(token_event(), "output_tokens"), "output_tokens", "required for TOKEN_USAGE events"),
    "CUSTOM without quantity": (without(custom_event(), "quantity"), "quantity", "required for CUSTOM events"),
    "IMAGE_GENERATION without image_count": (
        token_event(event_type="IMAGE_GENERATION"), "image_count", "required for IMAGE_GENERATION events"),
    "missing user_id": (without(token_event(), "user_id"), "user_id", "required"),
    "negative tokens": (token_event(input_tokens=-1), "input_tokens", "must be >= 0, got -1"),
    "huge tokens": (token_event(output_tokens=MAX_TOKENS + 1), "output_tokens", "EVENT_MAX_TOKENS"),
    "cached above input": (
        token_event(input_tokens=10, cached_input_tokens=11), "cached_input_tokens", "cannot exceed input_tokens"),
    "quantity with 13 decimals": (custom_event(quantity="0.1234567890123"), "quantity", "at most 12 decimal places"),
    "quantity NaN": (custom_event(quantity="NaN"), "quantity", "must be a finite number"),
    "negative quantity": (custom_event(quantity="-0.5"), "quantity", "must be >= 0"),
    "unknown event type": (token_event(event_type="VIDEO"), "event_type", "unknown event type 'VIDEO'"),
    "unknown field": (token_event(input_token=5), "input_token", "unknown field"),
    "timestamp without timezone": (token_event(timestamp="2026-11-26T12:00:00"), "timestamp", "must carry a timezone"),
    "unparsable timestamp": (token_event(timestamp="yesterday"), "timestamp", "RFC3339"),
    "timestamp too old": (token_event(timestamp=ago(days=36)), "timestamp", "older than 35 days"),
    "timestamp too far in the future": (token_event(timestamp=ago(days=-1)), "timestamp", "in the future"),
    "event not an object": ([1, 2], None, "expected object, got array"),
}


@pytest.mark.parametrize("case", INVALID_EVENTS, ids=list(INVALID_EVENTS))
def test_an_invalid_event_is_refused_naming_field_and_reason(settings, tenant, case):
    event, field, reason = INVALID_EVENTS[case]

    response = post(settings, tenant.api_key, {"events": [event]})

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["accepted"] == 0
    [rejection] = body["rejected"]
    assert rejection["index"] == 0
    assert rejection["event_id"] == (event.get("event_id") if isinstance(event, dict) else None)
    assert rejection["field"] == field
    assert reason in rejection["reason"], rejection


# --- the request as a whole ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content, code, field",
    [
        (b'{"events": [', "malformed_json", None),
        (b"[]", "invalid_body", None),
        (b'"events"', "invalid_body", None),
        (b"{}", "invalid_body", "events"),
        (b'{"events": {}}', "invalid_body", "events"),
        (b'{"events": []}', "empty_batch", "events"),
    ],
    ids=["malformed JSON", "array", "string", "missing events", "events not a list", "empty list"],
)
def test_a_malformed_envelope_is_400(settings, tenant, content, code, field):
    response = post(settings, tenant.api_key, content=content)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
    assert error["message"]


def test_too_many_events_is_413(settings, tenant):
    count = settings.ingest_max_batch_events + 1
    response = post(settings, tenant.api_key, content=b'{"events": [' + b",".join([b"{}"] * count) + b"]}")

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_many_events"
    assert str(settings.ingest_max_batch_events) in response.json()["error"]["message"]


def test_a_body_over_the_byte_limit_is_413_from_its_content_length(settings, tenant):
    content = b'{"events": ["' + b"x" * settings.ingest_max_body_bytes + b'"]}'
    response = post(settings, tenant.api_key, content=content)

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_chunked_body_over_the_byte_limit_is_413_while_streaming(settings, tenant):
    chunk = b"x" * 65536

    def body():  # no Content-Length: httpx sends it chunked
        yield b'{"events": ["'
        for _ in range(settings.ingest_max_body_bytes // len(chunk) + 16):
            yield chunk
        yield b'"]}'

    response = httpx.post(
        f"{settings.api_url}/v1/events/ingest", content=body(), timeout=60,
        headers={"X-OM-Api-Key": tenant.api_key, "Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "missing_api_key"),
        ({"X-OM-Api-Key": "om_" + "A" * 43}, "invalid_api_key"),
        ({"X-OM-Api-Key": "not-a-key"}, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_authorization"),
    ],
    ids=["no key", "unknown key", "not our key format", "not bearer"],
)
def test_a_request_without_a_valid_key_is_401(settings, headers, code):
    response = post(settings, None, {"events": [token_event()]}, headers=headers)

    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "X-OM-Api-Key" in error["message"] and "Bearer" in error["message"]


def test_a_revoked_key_is_401(settings, tenant):
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (tenant.key_id,))

    response = post(settings, tenant.api_key, {"events": [token_event()]})

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_another_tenants_customer_id_is_403_and_nothing_is_produced(settings, tenant, tail):
    other = new_tenant(settings)
    events = [token_event(user_id="mallory"), token_event(user_id="mallory", customer_id=other.customer_id)]

    response = post(settings, tenant.api_key, {"events": events})

    assert response.status_code == 403, response.text
    assert response.json()["error"] == {
        "code": "foreign_customer",
        "message": response.json()["error"]["message"],
        "field": "customer_id",
    }
    assert "index 1" in response.json()["error"]["message"]
    assert tail.produced_nothing_before(settings.api_url, tenant.api_key, "mallory")


def test_own_customer_id_is_accepted(settings, tenant, tail):
    response = post(settings, tenant.api_key, {"events": [token_event(customer_id=tenant.customer_id)]})
    assert response.status_code == 202, response.text
    assert len(tail.wait_for(1)) == 1


# --- Kafka down: a second API process whose broker is a closed port -------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_without_kafka(settings):
    port = _free_port()
    env = {
        **os.environ,
        "OM_ENV_FILE": "/dev/null",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_URL": "",
        "API_WORKERS": "1",
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",
        "KAFKA_PRODUCER_TIMEOUT_MS": "1500",
        "INGEST_RETRY_AFTER_S": "7",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "openmonetize", "run", "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(
            lambda: httpx.get(f"{url}/ready", timeout=5).json()["checks"]["event_schema"] == "ok",
            timeout_s=30, what="the second API's event schema",
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_kafka_unreachable_is_503_with_retry_after(settings, tenant, api_without_kafka):
    response = httpx.post(
        f"{api_without_kafka}/v1/events/ingest",
        json={"events": [token_event(), token_event(event_type="VIDEO")]},
        headers={"X-OM-Api-Key": tenant.api_key},
        timeout=30,
    )

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "7"
    body = response.json()
    assert body["error"]["code"] == "kafka_unavailable"
    assert body["accepted"] == 0
    assert "0 of 1" in body["error"]["message"]
    assert [r["field"] for r in body["rejected"]] == ["event_type"]


def test_metrics_count_accepted_and_rejected_events(settings, tenant):
    post(settings, tenant.api_key, {"events": [token_event(), token_event(input_tokens=-5)]})
    text = httpx.get(f"{settings.api_url}/metrics", timeout=10).text
    assert 'openmonetize_ingest_events_accepted_total{source="http"}' in text
    assert 'openmonetize_ingest_events_rejected_total{field="input_tokens",source="http"}' in text
    assert "openmonetize_kafka_delivery_seconds_bucket" in text

