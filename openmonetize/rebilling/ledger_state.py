"""What the Postgres ledger says a replay's events were charged, once it has caught up.

The ledger sink writes ledger.entries into `ledger_entries` a batch behind the topic, so before
reading, a run waits until every record the topic held when the run began is in Postgres
(`wait_for_ledger_sink`): every debit and adjustment the wallet agent had emitted by then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import psycopg
from confluent_kafka import Consumer, TopicPartition

from openmonetize.billing.money import ZERO
from openmonetize.rebilling.rerate import Charged

# Per (event, wallet): the net charge before this run (usage_debit and every adjustment booked
# by other runs or by hand) and what this run itself already booked. Usage debits are found by
# the event's time (their occurred_at), adjustments of the tenant whatever their time.
CHARGED_SQL = """
SELECT l.event_id, l.wallet_id,
       coalesce(-sum(l.amount) FILTER (WHERE r.entry_id IS NULL), 0) AS before,
       coalesce(-sum(l.amount) FILTER (WHERE r.entry_id IS NOT NULL), 0) AS booked,
       count(r.entry_id) AS booked_count
FROM ledger_entries l
LEFT JOIN replay_adjustments r ON r.entry_id = l.entry_id AND r.run_id = %(run_id)s
WHERE l.customer_id = %(customer_id)s AND l.event_id IS NOT NULL
  AND (l.kind = 'adjustment'
       OR (l.kind = 'usage_debit' AND l.occurred_at >= %(start)s AND l.occurred_at < %(end)s))
GROUP BY l.event_id, l.wallet_id
HAVING bool_or(l.kind = 'usage_debit')
"""


class LedgerBehind(RuntimeError):
    """The ledger sink did not catch up in time; the message says how far behind it is."""


def charged(conn: psycopg.Connection, run_id: str, customer_id: str, start: datetime, end: datetime
            ) -> dict[str, Charged | tuple[Charged, ...]]:
    """event id → its Charged (a tuple when the id was charged on several wallets)."""
    params = {"run_id": run_id, "customer_id": customer_id, "start": start, "end": end}
    found: dict[str, Charged | tuple[Charged, ...]] = {}
    with conn.cursor(binary=True) as cur:
        cur.execute(CHARGED_SQL, params)
        while rows := cur.fetchmany(50_000):
            for event_id, wallet_id, before, booked, count in rows:
                item = Charged(wallet_id, before, booked or ZERO, count)
                prior = found.get(event_id)
                if prior is None:
                    found[event_id] = item
                else:
                    found[event_id] = (*(prior if isinstance(prior, tuple) else (prior,)), item)
    return found


def wait_for_ledger_sink(conn: psycopg.Connection, bootstrap: str, topic: str, group: str, timeout_s: float,
                         decode: Callable[[bytes], dict]) -> None:
    """Until every record ledger.entries holds now is in `ledger_entries`.

    Below the sink group's committed offsets a record is surely written; the records above them
    (the sink commits a batch after writing it, and may keep its last batch uncommitted while
    the topic is idle) are read and looked up by entry id.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    gaps = {tp.partition: (max(tp.offset, 0), ends[tp.partition]) for tp in committed
            if max(tp.offset, 0) < ends[tp.partition]}
    if not gaps:
        return
    wanted = _entry_ids(bootstrap, topic, gaps, decode, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        found = {row[0] for row in conn.execute("SELECT entry_id FROM ledger_entries WHERE entry_id = ANY(%s)",
                                                (list(wanted),))}
        conn.commit()
        if found >= wanted:
            return
        if time.monotonic() > deadline:
            raise LedgerBehind(
                f"the ledger sink (group {group}) has not written {len(wanted - found)} entries of {topic} after "
                f"{timeout_s:g} s: is `openmonetize run sink-ledger` running? (REPLAY_LEDGER_WAIT_S)")
        time.sleep(0.2)


def _entry_ids(bootstrap: str, topic: str, gaps: dict[int, tuple[int, int]], decode: Callable[[bytes], dict],
               timeout_s: float) -> set[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "openmonetize-replay", "enable.auto.commit": False})
    found: set[str] = set()
    try:
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _end) in gaps.items()])
        todo = dict(gaps)
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error() is not None or message.partition() not in todo:
                    continue
                if message.offset() < todo[message.partition()][1] and message.value() is not None:
                    found.add(decode(message.value())["entry_id"])
                if message.offset() + 1 >= todo[message.partition()][1]:
                    del todo[message.partition()]
        if todo:
            raise LedgerBehind(f"could not read {topic} partitions {sorted(todo)} to their end in {timeout_s:g} s")
    finally:
        consumer.close()
    return found
