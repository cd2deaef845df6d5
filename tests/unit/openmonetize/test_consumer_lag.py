from __future__ import annotations

from openmonetize.consumer_lag import TopicLag, partition_lag, pipeline_consumers, table
from openmonetize.settings import Settings


def test_partition_lag_counts_from_the_committed_offset_or_the_low_watermark():
    assert partition_lag(committed=6, low=0, high=10) == 4
    assert partition_lag(committed=-1001, low=3, high=10) == 7  # never committed: all that is retained
    assert partition_lag(committed=2, low=5, high=10) == 5  # retention deleted what it had not read
    assert partition_lag(committed=10, low=0, high=10) == 0


def test_every_pipeline_consumer_is_listed_with_its_group_and_topics():
    settings = Settings(_env_file=None, worker_app_id="w", ledger_sink_group="l", clickhouse_sink_group="c",
                        topic_ledger_entries="le")
    assert pipeline_consumers(settings) == [
        ("worker", "w", ["usage.events", "wallet.commands", "wallet.debits"]),
        ("sink-ledger", "l", ["le"]),
        ("sink-clickhouse", "c", ["usage.rated"]),
    ]


def test_the_table_names_the_partition_furthest_behind():
    lags = [TopicLag("worker", "openmonetize", "usage.events", 2, {0: 3, 1: 40, 2: 0}),
            TopicLag("sink-ledger", "ledger-group", "ledger.entries", 0, {0: 0})]
    lines = table(lags).splitlines()
    assert lines[0].split() == ["consumer", "group", "topic", "members", "lag", "furthest", "behind"]
    assert lines[1].split() == ["worker", "openmonetize", "usage.events", "2", "43", "partition", "1:", "40"]
    assert lines[2].split() == ["sink-ledger", "ledger-group", "ledger.entries", "0", "0", "-"]
    assert lags[0].as_dict()["partitions"] == {"0": 3, "1": 40, "2": 0}
