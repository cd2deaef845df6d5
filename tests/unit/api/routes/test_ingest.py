"""The JSON batch envelope: one Raw per event, each judged on its own."""

from __future__ import annotations

import pytest

from api import intake
from api.errors import ApiError
from api.routes.ingest import candidate, parse_envelope
from schemas.usage_event import UsageEventIn


def test_each_event_stays_raw_until_validated_on_its_own():
    raws = parse_envelope(b'{"events": [{"a": 1}, 2], "batch_note": "ignored"}')
    assert [bytes(raw) for raw in raws] == [b'{"a": 1}', b"2"]


@pytest.mark.parametrize(
    "body, code, field",
    [(b"{", "malformed_json", None), (b"[]", "invalid_body", None), (b"{}", "invalid_body", "events"),
     (b'{"events": 1}', "invalid_body", "events")],
)
def test_a_bad_envelope_is_an_api_error(body, code, field):
    with pytest.raises(ApiError) as raised:
        parse_envelope(body)
    assert (raised.value.status, raised.value.code, raised.value.field) == (400, code, field)


def test_a_valid_event_decodes_and_an_invalid_one_keeps_its_readable_ids():
    valid = b'{"event_id": "e1", "user_id": "u", "event_type": "CUSTOM", "feature_id": "f", "timestamp": "2026-11-26T12:00:00Z"}'
    assert isinstance(candidate(parse_envelope(b'{"events": [' + valid + b"]}")[0]), UsageEventIn)
    bad = candidate(parse_envelope(b'{"events": [{"event_id": "e2", "customer_id": "cus_1", "input_tokens": "x"}]}')[0])
    assert isinstance(bad, intake.Invalid)
    assert (bad.event_id, bad.customer_id, bad.error.field) == ("e2", "cus_1", "input_tokens")
    assert candidate(parse_envelope(b'{"events": [{"event_id": 7}]}')[0]).event_id is None


@pytest.mark.parametrize("count, code", [(0, "empty_batch"), (11, "too_many_events")])
def test_batch_size_bounds(count, code):
    with pytest.raises(ApiError) as raised:
        intake.check_count(count, 10)
    assert raised.value.code == code
    intake.check_count(10, 10)
