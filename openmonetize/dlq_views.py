"""What `openmonetize dlq` and the API's DLQ pages (api/dlq_access.py) share: a DLQ reader with
the schema registry behind it, and the JSON view of a record and of a retry's outcome."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

from openmonetize.dlq.entries import DlqEntry
from openmonetize.dlq.reader import DlqReader
from openmonetize.dlq.redrive import Planned
from openmonetize.dlq.retry_rules import REFUSE, RETRY, SKIP_LIMIT
from openmonetize.settings import Settings


@contextmanager
def session(settings: Settings) -> Iterator[DlqReader]:
    """A DLQ reader with the codecs' schema registry behind it (schemas/registry_client.py). An
    unreachable Postgres raises psycopg.OperationalError, an unreachable SCHEMA_REGISTRY_URL
    RegistryUnreachable (one error line from the CLI), an unreachable Kafka DlqError."""
    from schemas.registry_client import registry_session

    with registry_session(settings) as registry:
        reader = DlqReader(settings, registry)
        try:
            yield reader
        finally:
            reader.close()


def utf8_or_none(data: bytes | None) -> str | None:
    """Bytes as text when they are UTF-8, else None."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def entry_json(entry: DlqEntry) -> dict:
    """One DLQ record as a JSON object (the original value as its size; `show` adds it whole)."""
    base = {"id": str(entry.id), "partition": entry.id.partition, "offset": entry.id.offset}
    if entry.record is None:
        return {**base, "error": entry.error}
    r = entry.record
    return {
        **base,
        "failed_at": r["failed_at"].isoformat(),
        "reason": r["reason"],
        "stage": r["stage"],
        "customer_id": r["customer_id"],
        "event_id": r["event_id"],
        "source_topic": r["source_topic"],
        "source_partition": r["source_partition"],
        "source_offset": r["source_offset"],
        "detail": r["detail"],
        "key": utf8_or_none(r["key"]),
        "key_base64": base64.b64encode(r["key"]).decode() if r["key"] is not None else None,
        "value_bytes": len(r["value"]),
    }


def retry_outcome(item: Planned, dry_run: bool) -> dict:
    entry, decision = item.entry, item.decision
    out = {"id": str(entry.id), "reason": entry.get("reason"), "customer_id": entry.get("customer_id"),
           "event_id": entry.get("event_id"), "topic": entry.get("source_topic")}
    if decision.action == RETRY:
        if dry_run:
            return {**out, "outcome": "would retry", "retry_count": decision.count}
        if item.acked:
            return {**out, "outcome": "retried", "retry_count": decision.count}
        return {**out, "outcome": "failed", "why": f"not re-produced: {item.error}"}
    if decision.action == SKIP_LIMIT:
        return {**out, "outcome": "skipped", "why": decision.why}
    assert decision.action == REFUSE
    return {**out, "outcome": "failed", "why": f"refused: {decision.why}"}
