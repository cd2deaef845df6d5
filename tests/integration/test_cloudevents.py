"""POST /v1/events with the official CloudEvents SDK as the client: structured and binary mode
through its HTTP binding; batch mode (which the SDK does not implement) as a JSON array of the
SDK's own structured encoding, per the spec's JSON batch format."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import httpx
import orjson
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import unique
from tests.integration.support import new_tenant

BATCH = "application/cloudevents-batch+json"


def usage_cloudevent(data: dict | None = None, **attributes) -> CloudEvent:
    base = {
        "id": unique("ce"),
        "type": "dev.openmonetize.usage.token_usage",
        "source": "https://app.example.com/chat",
        "subject": "user-7",
        "time": datetime.now(timezone.utc),
        "datacontenttype": "application/json",
    }
    usage = {"feature_id": "chat", "provider": "anthropic", "model": "claude-sonnet-4", "input_tokens": 900,
             "output_tokens": 120}
    return CloudEvent({**base, **attributes}, usage if data is None else data)


def send(settings, api_key: str, headers: dict, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{settings.api_url}/v1/events", content=body, headers={**headers, "X-OM-Api-Key": api_key}, timeout=30
    )


def batch_body(*events: CloudEvent) -> bytes:
    return b"[" + b",".join(JSONFormat().write(event) for event in events) + b"]"


def test_structured_mode_from_the_sdk_lands_on_usage_events(settings, tenant, tail):
    event = usage_cloudevent()
    message = to_structured_event(event)

    response = send(settings, tenant.api_key, message.headers, message.body)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "rejected": []}
    [(key, record)] = tail.wait_for(1)
    assert key == f"{tenant.customer_id}:user-7"
    assert record["event_id"] == event.get_id()
    assert record["event_type"] == "TOKEN_USAGE"
    assert record["user_id"] == "user-7"
    assert (record["model"], record["input_tokens"], record["output_tokens"]) == ("claude-sonnet-4", 900, 120)
    assert record["metadata"] == {"ce_source": "https://app.example.com/chat"}
    assert record["source"] == "cloudevents"
    assert abs(record["timestamp"] - event.get_time()).total_seconds() < 0.001


def test_binary_mode_from_the_sdk_lands_on_usage_events(settings, tenant, tail):
    event = usage_cloudevent(
        {"feature_id": "tts", "unit_type": "seconds", "quantity": 12.5, "provider": "openai", "model": "tts-1"},
        type="AUDIO",
        subject="user/with spaces",
    )
    message = to_binary_event(event)
    assert "ce-id" in message.headers

    response = send(settings, tenant.api_key, message.headers, message.body)

    assert response.status_code == 202, response.text
    [(key, record)] = tail.wait_for(1)
    assert key == f"{tenant.customer_id}:user/with spaces"
    assert (record["event_type"], record["quantity"], record["unit_type"]) == ("AUDIO", Decimal("12.5"), "seconds")


def test_batch_mode_partial_batch_is_207(settings, tenant, tail):
    good = [usage_cloudevent(), usage_cloudevent(type="TOKEN_USAGE", subject="user-8")]
    no_model = usage_cloudevent({"feature_id": "chat", "provider": "openai", "input_tokens": 1, "output_tokens": 1})
    bad_tokens = usage_cloudevent({"feature_id": "chat", "provider": "openai", "model": "gpt-4o",
                                   "input_tokens": "lots", "output_tokens": 1})

    response = send(settings, tenant.api_key, {"Content-Type": BATCH}, batch_body(good[0], no_model, bad_tokens, good[1]))

    assert response.status_code == 207, response.text
    assert response.json() == {
        "accepted": 2,
        "rejected": [
            {"index": 1, "event_id": no_model.get_id(), "field": "data.model",
             "reason": "required for TOKEN_USAGE events"},
            {"index": 2, "event_id": bad_tokens.get_id(), "field": "data.input_tokens",
             "reason": "expected int, got str"},
        ],
    }
    assert sorted(r["event_id"] for _, r in tail.wait_for(2)) == sorted(e.get_id() for e in good)


def structured(**overrides) -> bytes:
    event = orjson.loads(to_structured_event(usage_cloudevent()).body)
    event.update(overrides)
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


@pytest.mark.parametrize(
    "body, field, reason",
    [
        (structured(specversion="0.3"), "specversion", "must be '1.0'"),
        (structured(id=None), "id", "required"),
        (structured(source=None), "source", "required"),
        (structured(subject=None), "subject", "required"),
        (structured(time=None), "time", "required"),
        (structured(time="not a time"), "time", "RFC3339"),
        (structured(type="dev.openmonetize.usage.teleport"), "type", "unknown event type 'TELEPORT'"),
        (structured(data=None), "data", "required"),
        (structured(data={"feature_id": "chat", "user_id": "x"}), "data.user_id", "CloudEvents attribute `subject`"),
    ],
    ids=["wrong specversion", "missing id", "missing source", "missing subject", "missing time", "bad time",
         "unknown type", "no data", "user_id in data"],
)
def test_an_invalid_cloudevent_is_400_naming_the_attribute(settings, tenant, body, field, reason):
    response = send(settings, tenant.api_key, {"Content-Type": "application/cloudevents+json"}, body)

    assert response.status_code == 400, response.text
    [rejection] = response.json()["rejected"]
    assert rejection["field"] == field
    assert reason in rejection["reason"], rejection


def test_another_tenants_customer_id_in_data_is_403(settings, tenant, tail):
    other = new_tenant(settings)
    event = usage_cloudevent({"feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 1,
                              "output_tokens": 1, "customer_id": other.customer_id}, subject="eve")

    response = send(settings, tenant.api_key, {"Content-Type": BATCH}, batch_body(usage_cloudevent(subject="eve"), event))

    assert response.status_code == 403, response.text
    assert response.json()["error"]["field"] == "data.customer_id"
    assert tail.produced_nothing_before(settings.api_url, tenant.api_key, "eve")


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        ({"Content-Type": "text/plain"}, b"hello", 415, "unsupported_media_type"),
        ({"Content-Type": "text/plain", "ce-specversion": "1.0"}, b"hello", 415, "unsupported_data_type"),
        ({"Content-Type": "application/cloudevents+json"}, b"{nope", 400, "malformed_json"),
        ({"Content-Type": "application/cloudevents+json"}, b"[]", 400, "invalid_body"),
        ({"Content-Type": BATCH}, b"{}", 400, "invalid_body"),
        ({"Content-Type": BATCH}, b"[]", 400, "empty_batch"),
    ],
    ids=["not cloudevents", "binary non-JSON data", "malformed", "structured array", "batch object", "empty batch"],
)
def test_a_request_that_is_not_cloudevents_json_is_refused(settings, tenant, headers, body, status, code):
    response = send(settings, tenant.api_key, headers, body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_no_key_is_401(settings):
    message = to_structured_event(usage_cloudevent())
    response = httpx.post(f"{settings.api_url}/v1/events", content=message.body, headers=message.headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
