"""A record Postgres cannot hold does not stall the ledger: the stack's own ledger sink sets it
apart as a dead letter (reason `unstorable`) and stores everything around it, then goes on.

The API refuses such values now (test_bad_input.py), so the record is written to
`ledger.entries` directly, as a producer with a bug, or an older version, would.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import psycopg
from confluent_kafka import Producer
from psycopg_pool import ConnectionPool

from schemas.registry import SchemaRegistry
from schemas.topics import topics
from stream_processors import codecs as worker_codecs
from tests.conftest import eventually, unique
from tests.integration.support import read_topic


def entry(customer_id: str, event_id: str) -> dict:
    now = datetime.now(timezone.utc)
    return {"entry_id": unique("le"), "customer_id": customer_id, "wallet_id": f"w:{customer_id}:tenant",
            "kind": "usage_debit", "amount": Decimal("-1.5"), "balance_after": Decimal("-1.5"), "event_id": event_id,
            "command_id": None, "grant_id": None, "reason": None, "occurred_at": now, "recorded_at": now,
            "metadata": None}


def test_a_nul_in_a_ledger_entry_is_a_dead_letter_and_the_entries_around_it_are_stored(settings):
    spec = topics(settings)
    with ConnectionPool(settings.database_url, min_size=1, max_size=1, open=True) as pool:
        codecs = worker_codecs.register(SchemaRegistry(pool), spec)
    customer = unique("cus_nul")
    before, poisoned, after = entry(customer, "e-before"), entry(customer, "e-\x00-nul"), entry(customer, "e-after")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    key = f"w:{customer}:tenant".encode()  # one partition: the poisoned entry sits between the two others
    for record in (before, poisoned, after):
        producer.produce(spec.ledger_entries.name, key=key, value=codecs.ledger_entry.encode(record))
    assert producer.flush(30) == 0

    def stored() -> set[str]:
        with psycopg.connect(settings.database_url) as conn:
            return {row[0] for row in conn.execute("SELECT event_id FROM ledger_entries WHERE customer_id = %s",
                                                   (customer,))}

    eventually(lambda: stored() == {"e-before", "e-after"}, timeout_s=60, interval_s=0.2,
               what="the entries around the poisoned one in Postgres")

    def dead_letter() -> dict:
        found = [codecs.dlq.decode(m.value()) for m in read_topic(settings.kafka_bootstrap, spec.usage_dlq.name)
                 if m.key() == key]
        assert found, "no dead letter yet"
        return found[-1]

    letter = eventually(dead_letter, timeout_s=30, interval_s=0.5, what="the poisoned entry's dead letter")
    assert (letter["reason"], letter["stage"], letter["event_id"]) == ("unstorable", "sink-ledger", "e-\x00-nul")
    assert letter["customer_id"] == customer and letter["source_topic"] == spec.ledger_entries.name
    assert codecs.ledger_entry.decode(letter["value"])["entry_id"] == poisoned["entry_id"]  # the original bytes
    assert "NUL" in letter["detail"] or "0x00" in letter["detail"], letter["detail"]

    # ... and the sink goes on: a later entry lands as usual.
    later = entry(customer, "e-later")
    producer.produce(spec.ledger_entries.name, key=key, value=codecs.ledger_entry.encode(later))
    assert producer.flush(30) == 0
    eventually(lambda: "e-later" in stored(), timeout_s=60, interval_s=0.2, what="an entry after the poisoned one")
