"""What the stores can hold, checked at the edge (schemas/storable.py): through the event
contract, a control-plane body and the URL checks, each refusal names the field."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from api.dashboard.internal import json_int
from api.errors import ApiError
from api.routes.ingest import parse_envelope
from api.url_checks import problem
from schemas import storable
from schemas.usage_event import EventError, EventLimits, decode_event, to_record

NOW = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
LIMITS = EventLimits(timedelta(days=35), timedelta(minutes=5), 10**9, 1000, 10**12, 50)


def event(**fields) -> bytes:
    body = {"event_id": "e1", "user_id": "u1", "event_type": "TOKEN_USAGE", "feature_id": "chat",
            "timestamp": "2026-12-04T11:59:00Z", "provider": "openai", "model": "gpt-4o",
            "input_tokens": 10, "output_tokens": 5, **fields}
    return msgspec.json.encode(body)


@pytest.mark.parametrize("field", ["event_id", "user_id", "team_id", "feature_id", "model", "reservation_id"])
@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "tab\there", "del\x7f", "trailing\n"])
def test_ids_with_control_characters_are_refused_naming_the_field(field, bad):
    with pytest.raises(EventError) as refused:
        decode_event(event(**{field: bad}))
    assert refused.value.field == field and refused.value.reason == storable.ID_RULE


def test_metadata_may_hold_newlines_but_not_nul():
    def record(metadata):
        return to_record(decode_event(event(metadata=metadata)), customer_id="c", source="http", received_at=NOW,
                         limits=LIMITS)

    assert record({"note": "two\nlines"})["metadata"] == {"note": "two\nlines"}
    with pytest.raises(EventError) as refused:
        record({"note": "a\x00b"})
    assert refused.value.field == "metadata.note" and refused.value.reason == storable.TEXT_RULE


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_an_instant_outside_years_1_to_9999_in_utc_is_a_field_error(stamp):
    with pytest.raises(EventError) as refused:
        to_record(decode_event(event(timestamp=stamp)), customer_id="c", source="http", received_at=NOW,
                  limits=LIMITS)
    assert refused.value.field == "timestamp" and "years 1 to 9999" in refused.value.reason


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_body_nested_too_deeply_is_malformed_json_not_a_crash():
    with pytest.raises(ApiError) as refused:
        parse_envelope(b'{"events": [' + DEEP + b"]}")
    assert refused.value.status == 400 and refused.value.code == "malformed_json"
    assert "nests arrays or objects too deeply" in refused.value.message


def test_an_event_no_decoder_can_read_is_that_events_rejection():
    with pytest.raises(EventError) as refused:
        decode_event(b'{"event_id": "\xff\xfe"}')
    assert "not valid UTF-8" in refused.value.reason


def test_unstorable_names_the_first_nul_or_out_of_range_instant_anywhere_in_a_body():
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1)))
    assert storable.unstorable({"rules": [{"model": "m"}, {"model": "x\x00"}]}) == ("rules[1].model", storable.TEXT_RULE)
    assert storable.unstorable({"meta": {"k\x00": "v"}}) == ("meta", f"a key {storable.TEXT_RULE}")
    assert storable.unstorable({"expires_at": late}) == ("expires_at", "must fall within years 1 to 9999 in UTC")
    assert storable.unstorable({"ok": ["fine", 1, None, NOW]}) is None


@pytest.mark.parametrize("path, query, status_field", [
    (b"/v1/plans/p%00", b"", (400, None)),
    (b"/v1/plans/p%0A", b"", (400, None)),
    (b"/v1/plans/%ff", b"", (400, None)),
    (b"/v1/ledger", b"user_id=a%00b", (400, "user_id")),
    (b"/v1/ledger", b"cursor=%ff%fe", (400, "cursor")),
    (b"/v1/ledger", b"a%00=1", (400, None)),
])
def test_urls_with_control_characters_or_bad_utf8_are_refused(path, query, status_field):
    refusal = problem(path, query)
    assert refusal is not None and (refusal.status, refusal.field) == status_field


def test_ordinary_urls_pass_and_an_encoded_percent_is_not_decoded_twice():
    assert problem(b"/v1/ledger", b"user_id=caf%C3%A9&from=2026-12-01T00%3A00%3A00%2B01%3A00") is None
    assert problem(b"/v1/ledger", b"user_id=%2500") is None  # the text "%00", not a NUL


@pytest.mark.parametrize("typed, sent", [("12", 12), ("-3", -3), ("²", "²"), ("9" * 5000, "9" * 5000), ("1e3", "1e3")])
def test_dashboard_integer_fields_become_ints_only_when_they_are(typed, sent):
    assert json_int(typed) == sent
