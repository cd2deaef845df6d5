"""The pure parts of the DLQ tool: ids, times, selection, the retry decision and its headers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from openmonetize.dlq import (
    REFUSE,
    RETRY,
    RETRY_COUNT_HEADER,
    RETRY_OF_HEADER,
    SKIP_LIMIT,
    DlqEntry,
    DlqId,
    Earliest,
    Selection,
    decide,
    offset_runs,
    parse_id,
    parse_ids,
    parse_time,
    retry_count,
    retry_headers,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
INPUTS = ("usage.events", "wallet.commands", "wallet.debits")


def entry(partition=0, offset=0, reason="no_rate", customer="cus_a", stage="rate", failed_at=NOW,
          source_topic="usage.events", headers=None) -> DlqEntry:
    record = {
        "reason": reason, "detail": "", "stage": stage, "source_topic": source_topic, "source_partition": 0,
        "source_offset": 7, "key": b"k", "value": b"v", "event_id": "e1", "customer_id": customer,
        "failed_at": failed_at,
    }
    return DlqEntry(DlqId(partition, offset), record, headers or {})


# --- ids ----------------------------------------------------------------------------------
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


# --- selection ----------------------------------------------------------------------------
def test_an_empty_selection_matches_everything_even_undecodable_records():
    assert Selection().matches(entry())
    assert Selection().matches(DlqEntry(DlqId(0, 1), None, error="does not decode"))


def test_selection_filters_combine():
    s = Selection(reasons=frozenset({"no_rate", "too_old"}), customer="cus_a", stage="rate",
                  since=NOW - timedelta(hours=1), until=NOW + timedelta(hours=1))
    assert s.matches(entry())
    assert not s.matches(entry(reason="insufficient_credits"))
    assert s.matches(entry(reason="too_old"))
    assert not s.matches(entry(customer="cus_b"))
    assert not s.matches(entry(customer=None))
    assert not s.matches(entry(stage="debit"))
    assert not s.matches(entry(failed_at=NOW - timedelta(hours=2)))
    assert not s.matches(DlqEntry(DlqId(0, 1), None, error="does not decode"))  # a filter never picks those


def test_since_is_inclusive_until_is_exclusive():
    s = Selection(since=NOW, until=NOW + timedelta(seconds=1))
    assert s.matches(entry(failed_at=NOW))
    assert not s.matches(entry(failed_at=NOW + timedelta(seconds=1)))
    assert not s.matches(entry(failed_at=NOW - timedelta(microseconds=1)))


def test_earliest_keeps_the_first_n_by_failure_time_then_id():
    entries = [entry(p, o, failed_at=NOW + timedelta(seconds=s)) for p, o, s in
               [(0, 5, 30), (1, 0, 10), (2, 3, 20), (0, 6, 10), (1, 1, 0)]]
    kept = Earliest(3)
    for e in entries:
        kept.offer(e)
    assert [str(e.id) for e in kept.entries()] == ["1:1", "0:6", "1:0"]
    everything = Earliest(0)
    for e in entries:
        everything.offer(e)
    assert [str(e.id) for e in everything.entries()] == ["1:1", "0:6", "1:0", "2:3", "0:5"]


# --- retry --------------------------------------------------------------------------------
def test_a_record_from_an_input_topic_is_retried_with_the_next_count():
    first = decide(entry(), INPUTS, previous_count=0, max_retries=3)
    assert first.action == RETRY and first.count == 1
    decision = decide(entry(source_topic="wallet.debits"), INPUTS, previous_count=2, max_retries=3)
    assert decision.action == RETRY and decision.count == 3


def test_a_record_at_the_retry_limit_is_skipped():
    decision = decide(entry(), INPUTS, previous_count=3, max_retries=3)
    assert decision.action == SKIP_LIMIT and "already retried 3 time(s), the limit is 3" in decision.why


def test_a_record_from_another_topic_is_refused_whatever_its_count():
    decision = decide(entry(source_topic="usage.rated"), INPUTS, previous_count=0, max_retries=3)
    assert decision.action == REFUSE
    assert "'usage.rated' is not a pipeline input topic (usage.events, wallet.commands, wallet.debits)" in decision.why


def test_retry_count_reads_our_header_and_ignores_junk():
    assert retry_count(None) == 0
    assert retry_count({}) == 0
    assert retry_count({RETRY_COUNT_HEADER: b"2"}) == 2
    assert retry_count({RETRY_COUNT_HEADER: b"two"}) == 0
    assert retry_count({RETRY_COUNT_HEADER: b"-4"}) == 0


def test_retry_headers_keep_the_originals_and_replace_ours():
    original = [("traceparent", b"00-abc-01"), (RETRY_OF_HEADER, b"0:1"), (RETRY_COUNT_HEADER, b"1")]
    assert retry_headers(original, DlqId(2, 9), 2) == [
        ("traceparent", b"00-abc-01"), (RETRY_OF_HEADER, b"2:9"), (RETRY_COUNT_HEADER, b"2"),
    ]
    assert retry_headers(None, DlqId(0, 0), 1) == [(RETRY_OF_HEADER, b"0:0"), (RETRY_COUNT_HEADER, b"1")]


def test_offset_runs_read_neighbours_together_and_seek_over_gaps():
    assert offset_runs([], 10) == []
    assert offset_runs([5], 10) == [(5, 5)]
    assert offset_runs([1, 2, 12, 23, 40], 10) == [(1, 12), (23, 23), (40, 40)]
    assert offset_runs([0, 500, 1000], 500) == [(0, 1000)]
