"""The worker's consumer lag per source partition, for /metrics.

Lag is measured against what the agents APPLIED (their `applied_offsets` markers), not against
the group's committed offset, which Faust moves on its own schedule (see applied_offsets.py).
A partition this worker no longer owns is dropped from the gauge, so after a rebalance each
partition is reported by its owner only.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Gauge

from stream_processors.applied_offsets import AppliedOffsets

LAG = Gauge("openmonetize_worker_lag", "Records of an owned source partition not yet applied by the worker",
            ["topic", "partition"])
INTERVAL_S = 5.0


def partition_lags(assigned: Iterable, highwater, applied: Iterable[AppliedOffsets]) -> dict[tuple[str, int], int]:
    """(topic, partition) → high watermark minus the next offset to apply, for the agents'
    source partitions among `assigned` whose high watermark the consumer has seen."""
    lags = {}
    for tp in assigned:
        for offsets in applied:
            if tp.topic not in offsets.topics:
                continue
            try:
                high = highwater(tp)
            except AssertionError:  # aiokafka's answer for a partition revoked since `assigned`
                continue
            if high is None or high < 0:
                continue
            source = (tp.topic, tp.partition)
            position = offsets.next.get(source)
            if position is None:
                position = offsets.stored(*source) or 0
            lags[source] = max(high - position, 0)
    return lags


def install(app, applied: list[AppliedOffsets], interval_s: float = INTERVAL_S, highwater=None) -> None:
    """Refresh LAG every `interval_s` from the consumer's assignment and the high watermarks
    `highwater(tp)` gives (default: what Faust's consumer fetched)."""
    reported: set[tuple[str, int]] = set()

    @app.timer(interval_s)
    async def report_lag() -> None:
        if app.in_recovery:
            return  # the markers are being restored: a figure now would be a false spike
        lags = partition_lags(app.consumer.assignment(), highwater or app.consumer.highwater, applied)
        for topic, partition in reported - lags.keys():
            LAG.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            LAG.labels(topic, str(partition)).set(lag)
        reported.clear()
        reported.update(lags)
