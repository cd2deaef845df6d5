"""A DLQ record as the tools see it, and which ones a command selects."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime

from openmonetize.dlq.ids import DlqId


@dataclass
class DlqEntry:
    """One DLQ record as read: its id, its Kafka headers and timestamp, and the decoded
    DlqRecord (`record`), or `error` when the DLQ record itself does not decode."""

    id: DlqId
    record: dict | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int | None = None
    error: str | None = None

    def get(self, name: str):
        return (self.record or {}).get(name)

    @property
    def sort_key(self) -> tuple:
        failed_at = self.get("failed_at")
        return (failed_at.timestamp() if failed_at else float("-inf"), self.id.partition, self.id.offset)

    @property
    def source(self) -> tuple[str, int, int] | None:
        if self.record is None:
            return None
        return self.record["source_topic"], self.record["source_partition"], self.record["source_offset"]


@dataclass(frozen=True)
class Selection:
    """Which DLQ records a command works on; an empty field does not filter."""

    reasons: frozenset[str] = frozenset()
    customer: str | None = None
    stage: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: DlqEntry) -> bool:
        if entry.record is None:  # an undecodable DLQ record: only an unfiltered listing shows it
            return not self.filtered
        if self.reasons and entry.get("reason") not in self.reasons:
            return False
        if self.customer is not None and entry.get("customer_id") != self.customer:
            return False
        if self.stage is not None and entry.get("stage") != self.stage:
            return False
        failed_at = entry.get("failed_at")
        if self.since is not None and failed_at < self.since:
            return False
        if self.until is not None and failed_at >= self.until:
            return False
        return True

    @property
    def filtered(self) -> bool:
        return bool(self.reasons or self.customer is not None or self.stage is not None or self.since or self.until)


class Earliest:
    """The `limit` earliest (by failed_at, then id) of the entries offered; all when limit is 0."""

    def __init__(self, limit: int):
        self.limit = limit
        self._heap: list[tuple] = []  # (negated sort key, counter, entry): a max-heap of the kept ones
        self._count = 0

    def offer(self, entry: DlqEntry) -> None:
        self._count += 1
        key = entry.sort_key
        item = (tuple(-k for k in key), self._count, entry)
        if not self.limit or len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif key < tuple(-k for k in self._heap[0][0]):
            heapq.heapreplace(self._heap, item)

    def entries(self) -> list[DlqEntry]:
        return sorted((item[2] for item in self._heap), key=lambda e: e.sort_key)
