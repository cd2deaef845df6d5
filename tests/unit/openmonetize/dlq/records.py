"""DLQ entries the DLQ tests build."""

from __future__ import annotations

from datetime import datetime, timezone

from openmonetize.dlq.entries import DlqEntry
from openmonetize.dlq.ids import DlqId

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
