"""Which DLQ records a command selects."""

from __future__ import annotations

from datetime import timedelta

from openmonetize.dlq.entries import DlqEntry, Earliest, Selection
from openmonetize.dlq.ids import DlqId
from tests.unit.openmonetize.dlq.records import NOW, entry


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
