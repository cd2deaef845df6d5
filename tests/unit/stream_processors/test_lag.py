from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import NamedTuple

from prometheus_client import REGISTRY

from stream_processors import lag


class tp(NamedTuple):  # faust's TP
    topic: str
    partition: int


class Applied:
    """What lag reads of stream_processors.applied_offsets.AppliedOffsets."""

    def __init__(self, topics, next=None, stored=None):
        self.topics = set(topics)
        self.next = dict(next or {})
        self._stored = dict(stored or {})

    def stored(self, topic, partition):
        return self._stored.get((topic, partition))


def test_lag_is_the_high_watermark_minus_the_next_offset_to_apply():
    usage = Applied({"usage.events"}, next={("usage.events", 0): 90}, stored={("usage.events", 1): 40})
    wallets = Applied({"wallet.commands", "wallet.debits"})
    highs = {("usage.events", 0): 100, ("usage.events", 1): 50, ("wallet.debits", 3): 7,
             ("wallets-changelog", 3): 1000}
    assigned = [tp("usage.events", 0), tp("usage.events", 1), tp("wallet.debits", 3), tp("wallets-changelog", 3),
                tp("wallet.commands", 2)]

    lags = lag.partition_lags(assigned, lambda t: highs.get((t.topic, t.partition)), [usage, wallets])

    # 1: the stored marker stands in until the agent reads the partition; wallet.debits 3: nothing
    # applied yet; wallet.commands 2: no high watermark fetched yet; the changelog is no source.
    assert lags == {("usage.events", 0): 10, ("usage.events", 1): 10, ("wallet.debits", 3): 7}


def test_a_partition_revoked_meanwhile_is_skipped():
    def highwater(t):
        raise AssertionError("Partition is not assigned")

    assert lag.partition_lags([tp("usage.events", 0)], highwater, [Applied({"usage.events"})]) == {}


def test_the_gauge_drops_partitions_this_worker_no_longer_owns():
    timers = []
    assignment = {tp("usage.events", 4), tp("usage.events", 5)}
    app = SimpleNamespace(
        in_recovery=False,
        consumer=SimpleNamespace(assignment=lambda: set(assignment), highwater=lambda t: 20),
        timer=lambda interval_s: lambda fn: timers.append(fn) or fn,
    )
    lag.install(app, [Applied({"usage.events"}, next={("usage.events", 4): 15})])
    report = timers[0]

    def value(partition):
        return REGISTRY.get_sample_value("openmonetize_worker_lag", {"topic": "usage.events", "partition": partition})

    asyncio.run(report())
    assert (value("4"), value("5")) == (5, 20)
    assignment.discard(tp("usage.events", 5))
    asyncio.run(report())
    assert (value("4"), value("5")) == (5, None)
