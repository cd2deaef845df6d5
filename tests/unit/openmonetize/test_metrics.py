"""One naming scheme for every metric of every process (openmonetize/metrics.py says which)."""

from __future__ import annotations

import time
from collections import Counter as Tally

import pytest

from openmonetize import metrics
from stream_processors.outputs import oldest_timestamp_s
from tests.unit.metric_definitions import definitions

DEFINED = definitions()
# Histograms measure durations, except these sizes (named for what they count).
SIZE_HISTOGRAMS = {"openmonetize_sink_batch_rows"}


def test_the_scan_finds_the_metrics_of_every_process():
    names = {d.name for d in DEFINED}
    for expected in ("openmonetize_http_requests_total", "openmonetize_usage_events_total",
                     "openmonetize_sink_lag", "openmonetize_worker_lag", "openmonetize_dlq_records_total",
                     "openmonetize_clickhouse_http_requests_total", "openmonetize_stage_latency_seconds"):
        assert expected in names


@pytest.mark.parametrize("definition", DEFINED, ids=lambda d: d.name)
def test_metric_follows_the_naming_scheme(definition):
    name, kind = definition.name, definition.kind
    assert name.startswith("openmonetize_"), definition.where
    assert name == name.lower() and "__" not in name, definition.where
    if kind == "Counter":
        assert name.endswith("_total"), definition.where
    else:
        assert not name.endswith("_total"), definition.where
    if kind == "Histogram" and name not in SIZE_HISTOGRAMS:
        assert name.endswith("_seconds"), definition.where
    if "partition" in definition.labels:
        assert "topic" in definition.labels, definition.where


def test_no_metric_is_defined_twice():
    repeated = [name for name, count in Tally(d.name for d in DEFINED).items() if count > 1]
    assert repeated == []


def test_stage_latency_is_measured_from_the_oldest_record():
    class Message:
        def __init__(self, timestamp):
            self.timestamp = timestamp

    now = time.time()
    assert oldest_timestamp_s([Message(now - 1), Message(now - 5), Message(None), object()]) == now - 5
    assert oldest_timestamp_s([Message(None)]) is None

    child = metrics.STAGE_LATENCY.labels("unit-test")
    before = child._sum.get()
    metrics.observe_stage_latency("unit-test", now - 5)
    metrics.observe_stage_latency("unit-test", None)
    assert 5 <= child._sum.get() - before < 6
