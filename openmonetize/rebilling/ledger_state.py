"""What the Postgres ledger says a replay's events were charged, once it has caught up.

The ledger sink writes ledger.entries into `ledger_entries` a batch behind the topic, so before
reading, a run waits until every record the topic held when the run began is in Postgres
(`wait_for_ledger_sink`): every debit and adjustment the wallet agent had emitted by then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import psycopg
from confluent_kafka import Consumer, TopicPartition

from openmonetize.billing.money import ZERO
from openmonetize.rebilling.rerate import Charged

# What the ledger charged, in two plain reads (no aggregation in Postgres: one row out per row
# in, summed here): the usage debits of the range, found by the event's time (their occurred_at)
# through the (customer_id, occurred_at) index, and every adjustment booked for an event of
# the tenant, whatever its time, with whether this run booked it.
DEBITS_SQL = """
SELECT event_id, wallet_id, amount FROM ledger_entries
WHERE customer_id = %(customer_id)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
  AND kind = 'usage_debit' AND event_id IS NOT NULL
"""
ADJUSTMENTS_SQL = """
SELECT l.event_id, l.wallet_id, l.amount, r.entry_id IS NOT NULL
FROM ledger_entries l
LEFT JOIN replay_adjustments r ON r.entry_id = l.entry_id AND r.run_id = %(run_id)s
WHERE l.customer_id = %(customer_id)s AND l.kind = 'adjustment' AND l.event_id IS NOT NULL
"""


class LedgerBehind(RuntimeError):
    """The ledger sink did not catch up in time; the message says how far behind it is."""


def charged(conn: psycopg.Connection, run_id: str, customer_id: str, start: datetime, end: datetime
            ) -> dict[str, Charged | tuple[Charged, ...]]:
    """event id → its Charged (a tuple when the id was charged on several wallets): the net charge
    before this run (usage_debit and every adjustment booked by other runs or by hand) and what
    this run itself already booked."""
    params = {"run_id": run_id, "customer_id": customer_id, "start": start, "end": end}
    debits: dict[tuple[str, str], Decimal] = {}
    with conn.cursor(binary=True) as cur:
        cur.execute(DEBITS_SQL, params)
        while rows := cur.fetchmany(100_000):
            for event_id, wallet_id, amount in rows:
                debits[event_id, wallet_id] = -amount
        adjusted: dict[tuple[str, str], list] = {}
        for event_id, wallet_id, amount, ours in cur.execute(ADJUSTMENTS_SQL, params):
            if (event_id, wallet_id) in debits:
                entry = adjusted.setdefault((event_id, wallet_id), [ZERO, ZERO, 0])
                if ours:
                    entry[1] -= amount
                    entry[2] += 1
                else:
                    entry[0] -= amount
    found: dict[str, Charged | tuple[Charged, ...]] = {}
    for (event_id, wallet_id), debited in debits.items():
        more = adjusted.get((event_id, wallet_id))
        item = Charged(wallet_id, debited) if more is None else Charged(wallet_id, debited + more[0], more[1], more[2])
        prior = found.get(event_id)
        if prior is None:
            found[event_id] = item
        else:
            found[event_id] = (*((prior,) if isinstance(prior, Charged) else prior), item)
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
