"""The event contract: what is accepted, and for what is refused, which field and why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from openmonetize.settings import Settings
from schemas.usage_event import EventError, EventLimits, ForeignCustomerError, convert_event, decode_event, to_record

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
LIMITS = EventLimits.from_settings(Settings(_env_file=None))


def token_event(**overrides) -> dict:
    event = {
        "event_id": "evt-1",
        "user_id": "user-1",
        "event_type": "TOKEN_USAGE",
        "feature_id": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200,
        "output_tokens": 300,
        "timestamp": "2026-11-26T11:59:00Z",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def accept(event: dict) -> dict:
    return to_record(
        decode_event(json.dumps(event).encode()), customer_id="cus_a", source="http", received_at=NOW, limits=LIMITS
    )


def refuse(event: dict | bytes) -> EventError:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    with pytest.raises(EventError) as raised:
        to_record(decode_event(raw), customer_id="cus_a", source="http", received_at=NOW, limits=LIMITS)
    return raised.value


def test_a_token_event_becomes_the_avro_record():
    record = accept(token_event(cached_input_tokens=200, metadata={"region": "eu"}))
    assert record["customer_id"] == "cus_a"  # from the key, not the body
    assert record["timestamp"] == datetime(2026, 11, 26, 11, 59, tzinfo=timezone.utc)
    assert record["received_at"] == NOW and record["source"] == "http"
    assert (record["input_tokens"], record["output_tokens"], record["cached_input_tokens"]) == (1200, 300, 200)
    assert record["metadata"] == {"region": "eu"} and record["team_id"] is None


def test_quantity_keeps_every_digit():
    record = accept(token_event(event_type="CUSTOM", unit_type="requests", quantity="0.000000000001", model=None))
    assert record["quantity"] == Decimal("0.000000000001")
    assert accept(token_event(event_type="CUSTOM", unit_type="s", quantity=12.5))["quantity"] == Decimal("12.5")


def test_timestamps_in_other_offsets_are_normalised_to_utc():
    record = accept(token_event(timestamp="2026-11-26T13:59:00+02:00"))
    assert record["timestamp"] == datetime(2026, 11, 26, 11, 59, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "event, field, reason",
    [
        (token_event(input_tokens="12"), "input_tokens", "expected int, got str"),
        (token_event(input_tokens=1.5), "input_tokens", "expected int, got float"),
        (token_event(output_tokens=True), "output_tokens", "expected int, got bool"),
        (token_event(user_id=...), "user_id", "required"),
        (token_event(user_id=""), "user_id", "length >= 1"),
        (token_event(input_token=5), "input_token", "unknown field"),
        (token_event(model=...), "model", "required for TOKEN_USAGE events"),
        (token_event(event_type="CUSTOM", model=None), "unit_type", "required for CUSTOM events"),
        (token_event(event_type="IMAGE_GENERATION"), "image_count", "required for IMAGE_GENERATION events"),
        (token_event(event_type="VIDEO"), "event_type", "unknown event type 'VIDEO'"),
        (token_event(input_tokens=-1), "input_tokens", "must be >= 0"),
        (token_event(output_tokens=50_000_001), "output_tokens", "EVENT_MAX_TOKENS"),
        (token_event(cached_input_tokens=1201), "cached_input_tokens", "cannot exceed input_tokens"),
        (token_event(event_type="IMAGE_GENERATION", image_count=0), "image_count", "must be >= 1"),
        (token_event(event_type="CUSTOM", unit_type="s", quantity="NaN"), "quantity", "finite"),
        (token_event(event_type="CUSTOM", unit_type="s", quantity="-1"), "quantity", "must be >= 0"),
        (token_event(event_type="CUSTOM", unit_type="s", quantity="1e13"), "quantity", "EVENT_MAX_QUANTITY"),
        (token_event(event_type="CUSTOM", unit_type="s", quantity="0.0000000000001"), "quantity", "12 decimal places"),
        (token_event(unit_type="s"), "quantity", "go together"),
        (token_event(event_type="AUDIO", input_tokens=None, output_tokens=None), "quantity", "AUDIO events need"),
        (token_event(timestamp="2026-11-26T11:59:00"), "timestamp", "must carry a timezone"),
        (token_event(timestamp="yesterday"), "timestamp", "Invalid RFC3339"),
        (token_event(timestamp="2026-10-01T00:00:00Z"), "timestamp", "older than 35 days"),
        (token_event(timestamp="2026-11-26T12:05:01Z"), "timestamp", "in the future"),
        (token_event(metadata={"k": "v" * 1025}), "metadata.k", "at most 1024"),
        (token_event(metadata={str(i): "v" for i in range(65)}), "metadata", "at most 64 entries"),
        (token_event(event_id="x" * 129), "event_id", "length <= 128"),
    ],
)
def test_refused_with_field_and_reason(event, field, reason):
    error = refuse(event)
    assert error.field == field
    assert reason in error.reason, error.reason


def test_malformed_json_is_refused_without_a_field():
    error = refuse(b'{"event_id": ')
    assert error.field is None and error.reason.startswith("malformed JSON")


def test_another_tenants_customer_is_a_distinct_error():
    with pytest.raises(ForeignCustomerError):
        accept(token_event(customer_id="cus_b"))
    assert accept(token_event(customer_id="cus_a"))["customer_id"] == "cus_a"


def test_the_edges_of_the_time_window_are_accepted():
    oldest = (NOW - timedelta(days=35)).isoformat()
    newest = (NOW + timedelta(seconds=300)).isoformat()
    assert accept(token_event(timestamp=oldest))["timestamp"] == NOW - timedelta(days=35)
    assert accept(token_event(timestamp=newest))["timestamp"] == NOW + timedelta(seconds=300)


def test_convert_event_applies_the_same_rules_to_parsed_values():
    event = convert_event({**token_event(), "timestamp": "2026-11-26T11:59:00Z"})
    assert event.input_tokens == 1200
    with pytest.raises(EventError) as raised:
        convert_event({**token_event(), "input_tokens": "many"})
    assert raised.value.field == "input_tokens"
