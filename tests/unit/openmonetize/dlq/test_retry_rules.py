"""What may be re-driven, and the headers that count retries."""

from __future__ import annotations

from openmonetize.dlq.ids import DlqId
from openmonetize.dlq.retry_rules import (
    REFUSE,
    RETRY,
    RETRY_COUNT_HEADER,
    RETRY_OF_HEADER,
    SKIP_LIMIT,
    decide,
    offset_runs,
    retry_count,
    retry_headers,
)
from tests.unit.openmonetize.dlq.records import INPUTS, entry


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
