"""`openmonetize topics create`: the topics `stack up` makes, for a cluster the stack does not run."""

from __future__ import annotations

import os
import subprocess
import sys

from confluent_kafka.admin import AdminClient

from tests.conftest import unique

TOPIC_SETTINGS = ("TOPIC_USAGE_EVENTS", "TOPIC_USAGE_RATED", "TOPIC_LEDGER_ENTRIES", "TOPIC_WALLET_COMMANDS",
                  "TOPIC_WALLET_BALANCES", "TOPIC_USAGE_DLQ", "TOPIC_WALLET_DEBITS", "TOPIC_BILLING_CATALOG")


def test_topics_create_makes_every_registry_topic_once(settings):
    names = {setting: unique(setting.lower()) for setting in TOPIC_SETTINGS}
    env = {**os.environ, **names, "KAFKA_PARTITIONS": "3"}

    def create() -> str:
        result = subprocess.run([sys.executable, "-m", "openmonetize", "topics", "create"], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        first = create()
        assert first.startswith("created ") and set(first.removeprefix("created ").split(", ")) == set(names.values())
        existing = admin.list_topics(timeout=10).topics
        assert len(existing[names["TOPIC_USAGE_EVENTS"]].partitions) == 3
        assert len(existing[names["TOPIC_BILLING_CATALOG"]].partitions) == 1  # the catalog is one ordered log
        assert create() == "every topic exists"
    finally:
        admin.delete_topics(list(names.values()))
