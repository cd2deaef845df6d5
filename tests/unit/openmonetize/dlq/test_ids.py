"""DLQ record ids and the times --since accepts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from openmonetize.dlq.ids import DlqId, parse_id, parse_ids, parse_time
from tests.unit.openmonetize.dlq.records import NOW


def test_ids_are_partition_colon_offset():
    assert parse_id("3:1042") == DlqId(3, 1042)
    assert parse_id(" 0:0 ") == DlqId(0, 0)
    assert str(DlqId(2, 15)) == "2:15"


@pytest.mark.parametrize("text", ["", "3", "3:", ":4", "a:1", "1:b", "-1:2", "1:-2", "1:2:3", "1.0:2", "1 : 2"])
def test_malformed_ids_say_what_is_expected(text):
    with pytest.raises(ValueError, match="expected PARTITION:OFFSET"):
        parse_id(text)


def test_repeated_ids_are_kept_once_in_order():
    assert parse_ids(["2:5", "0:1", "2:5"]) == [DlqId(2, 5), DlqId(0, 1)]


# --- times --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=timezone.utc)),
    ("2026-11-26T10:00:00z", datetime(2026, 11, 26, 10, tzinfo=timezone.utc)),
    ("2026-11-26T12:00:00+02:00", datetime(2026, 11, 26, 10, tzinfo=timezone.utc)),
    ("2026-11-26T10:00:00", datetime(2026, 11, 26, 10, tzinfo=timezone.utc)),  # no zone: UTC
    ("2026-11-26", datetime(2026, 11, 26, tzinfo=timezone.utc)),
    ("90s", NOW - timedelta(seconds=90)),
    ("15m", NOW - timedelta(minutes=15)),
    ("2h", NOW - timedelta(hours=2)),
    ("1.5h", NOW - timedelta(minutes=90)),
    ("7d", NOW - timedelta(days=7)),
    ("1w", NOW - timedelta(days=7)),
])
def test_times_are_rfc3339_or_an_age(text, expected):
    parsed = parse_time(text, now=NOW)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2h ago", "10", "2026-13-01", "Z"])
def test_bad_times_say_which_forms_work(text):
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time(text, now=NOW)
