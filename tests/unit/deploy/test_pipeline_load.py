"""The steady load made ahead of its clock (deploy/bench/pipeline_load.py) is the stream the
generator makes, and counts only the retries and late events it has handed out."""

from datetime import datetime, timezone

from deploy.bench.pipeline_load import Pregenerated
from producers.loadgen import EventGenerator

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def generator() -> EventGenerator:
    return EventGenerator(3, ["cus_a", "cus_b"], 50, duplicate_share=0.2, late_share=0.1, now=lambda: NOW)


def test_the_events_are_the_generators_stream_in_order():
    load, reference = Pregenerated(generator(), 500), generator()
    handed = load.batch(120) + load.batch(1) + load.batch(1000)
    assert handed == reference.batch(500)
    assert load.batch(10) == []
    assert (load.duplicates, load.late) == (reference.duplicates, reference.late)


def test_only_what_was_handed_out_is_counted():
    load, reference = Pregenerated(generator(), 1000), generator()
    assert (load.duplicates, load.late) == (0, 0)
    load.batch(300)
    reference.batch(300)
    assert (load.duplicates, load.late) == (reference.duplicates, reference.late)
    assert 0 < load.duplicates < 300
