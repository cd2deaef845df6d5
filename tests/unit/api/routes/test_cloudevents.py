"""CloudEvents attributes → usage events, and error fields spelt as the CloudEvents client sent them."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from api import intake
from api.routes.cloudevents import binary_attributes, candidate, event_type, field_name, to_event
from schemas.usage_event import EventError


def attributes(**overrides) -> dict:
    base = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/chat",
        "type": "dev.openmonetize.usage.token_usage",
        "subject": "user-1",
        "time": "2026-11-26T12:00:00Z",
        "data": {"feature_id": "chat", "provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 2},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_attributes_map_to_the_contract_fields():
    event = to_event(attributes())
    assert (event.event_id, event.event_type, event.user_id) == ("evt-1", "TOKEN_USAGE", "user-1")
    assert event.timestamp == datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    assert event.metadata == {"ce_source": "/chat"}
    assert (event.model, event.input_tokens) == ("gpt-4o", 10)


@pytest.mark.parametrize(
    "ce_type, ours",
    [("TOKEN_USAGE", "TOKEN_USAGE"), ("dev.openmonetize.usage.image_generation", "IMAGE_GENERATION"),
     ("dev.openmonetize.usage.CUSTOM", "CUSTOM"), ("com.example.other", "com.example.other")],
)
def test_type_accepts_bare_and_reverse_dns_names(ce_type, ours):
    assert event_type(ce_type) == ours


def test_data_metadata_is_kept_beside_the_source():
    event = to_event(attributes(data={**attributes()["data"], "metadata": {"req": "r1"}}))
    assert event.metadata == {"req": "r1", "ce_source": "/chat"}


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": None}, "id"),
        ({"id": ""}, "id"),
        ({"source": None}, "source"),
        ({"type": None}, "type"),
        ({"data": None}, "data"),
        ({"data": "text"}, "data"),
        ({"data_base64": "AAAA"}, "data_base64"),
        ({"data": {"event_id": "x"}}, "data.event_id"),
        ({"data": {"feature_id": "f", "metadata": {"ce_source": "x"}}}, "data.metadata.ce_source"),
    ],
)
def test_envelope_errors_name_the_attribute(overrides, field):
    with pytest.raises(EventError) as raised:
        to_event(attributes(**overrides))
    assert raised.value.field == field


@pytest.mark.parametrize(
    "contract, client",
    [("event_id", "id"), ("user_id", "subject"), ("timestamp", "time"), ("event_type", "type"),
     ("model", "data.model"), ("metadata.k", "data.metadata.k"), ("specversion", "specversion"),
     ("data.model", "data.model"), (None, None)],
)
def test_field_names_are_spelt_as_the_client_sent_them(contract, client):
    assert field_name(contract) == client


def test_contract_errors_from_conversion_come_back_with_contract_names():
    with pytest.raises(EventError) as raised:
        to_event(attributes(subject=None))
    assert field_name(raised.value.field) == "subject"


def test_binary_headers_are_percent_decoded_and_the_body_is_data():
    headers = {"ce-id": "e%201", "ce-specversion": "1.0", "Ce-Subject": "a%25b", "content-type": "application/json"}
    got = binary_attributes(headers, b'{"quantity": 0.1234567890123456789}')
    assert got == {"id": "e 1", "specversion": "1.0", "subject": "a%b", "data": {"quantity": Decimal("0.1234567890123456789")}}


def test_an_invalid_cloudevent_keeps_its_readable_ids():
    got = candidate(attributes(specversion="2.0", data={"customer_id": "cus_x"}))
    assert isinstance(got, intake.Invalid)
    assert (got.event_id, got.customer_id, got.error.field) == ("evt-1", "cus_x", "specversion")
    not_an_object = candidate([1])
    assert (not_an_object.event_id, not_an_object.error.reason) == (None, "a CloudEvent must be a JSON object")
