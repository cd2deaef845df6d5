"""What the Postgres ledger says a replay's events were charged, once it has caught up.

The ledger sink writes ledger.entries into `ledger_entries` a batch behind the topic, so before
reading, a run waits until every record the topic held when the run began is in Postgres
(`wait_for_ledger_sink`): every debit and adjustment the wallet agent had emitted by then.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import psycopg
from confluent_kafka import Consumer, TopicPartition

from openmonetize.billing.money import from_units, to_units
from openmonetize.rebilling.rerate import Charged, LedgerCharges

# What the ledger charged, in two reads: the usage debits of the range, found by the event's time
# (their occurred_at) through the (customer_id, occurred_at) index, as one row of two arrays and
# the amounts charged (> 0) in units of 10^-12 as comma-separated integers (no per-row protocol
# or Python work: 285,000 debits in ~0.4 s, from ~1.2 s row by row), and
# every adjustment booked for an event of the tenant, whatever its time, with whether this run
# booked it (a handful). A GROUP BY join of the two took several times as long.
DEBITS_SQL = """
SELECT array_agg(event_id), array_agg(wallet_id), string_agg(trunc(-amount * 1000000000000)::text, ',')
FROM ledger_entries
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
            ) -> LedgerCharges:
    """What the ledger charged each event of the range (`LedgerCharges`): the net charge before
    this run (usage_debit and every adjustment booked by other runs or by hand) and what this
    run itself already booked; an event id charged on several wallets has a Charged per wallet."""
    params = {"run_id": run_id, "customer_id": customer_id, "start": start, "end": end}
    with conn.cursor(binary=True) as cur:
        cur.execute(DEBITS_SQL, params)
        events, wallets, amounts = cur.fetchone()
        adjustments = cur.execute(ADJUSTMENTS_SQL, params).fetchall()
    return charges(events or [], wallets or [], list(map(int, amounts.split(","))) if amounts else [], adjustments)


def charges(events: list[str], wallets: list[str], units: list[int],
            adjustments: list[tuple[str, str, Decimal, bool]]) -> LedgerCharges:
    """The LedgerCharges of the debits (event id, wallet, amount charged in units of 10^-12, in
    the ledger's order) and the adjustments (event id, wallet, ledger amount, booked by this
    run). The common event (one debit, never adjusted) costs two dict entries made in C."""
    by_event = dict(zip(events, units))
    by_wallet = dict(zip(events, wallets))
    several = {e for e, n in Counter(events).items() if n > 1} if len(by_event) < len(events) else set()
    special = set(several)
    for event_id, wallet_id, _amount, _ours in adjustments:
        if event_id not in several and by_wallet.get(event_id) == wallet_id:
            special.add(event_id)
    if not special:
        return LedgerCharges(by_event, by_wallet, {})
    # event id → (wallet → debit), in the ledger's order; a repeated (event, wallet): the last
    debits: dict[str, dict[str, int]] = {}
    if several:
        for event_id, wallet_id, amount in zip(events, wallets, units):
            if event_id in special:
                debits.setdefault(event_id, {})[wallet_id] = amount
    for event_id in special - several:
        debits[event_id] = {by_wallet[event_id]: by_event[event_id]}
    totals: dict[tuple[str, str], list[int]] = {}
    for event_id, wallet_id, amount, ours in adjustments:
        if wallet_id in debits.get(event_id, ()):
            entry = totals.setdefault((event_id, wallet_id), [0, 0, 0])  # others', ours, ours' count
            if ours:
                entry[1] -= to_units(amount)
                entry[2] += 1
            else:
                entry[0] -= to_units(amount)
    others: dict[str, Charged | tuple[Charged, ...]] = {}
    for event_id, on_wallets in debits.items():
        found = []
        for wallet_id, debit in on_wallets.items():
            more = totals.get((event_id, wallet_id))
            found.append(Charged(wallet_id, from_units(debit)) if more is None else
                         Charged(wallet_id, from_units(debit + more[0]), from_units(more[1]), more[2]))
        others[event_id] = found[0] if len(found) == 1 else tuple(found)
        by_event.pop(event_id, None)
        by_wallet.pop(event_id, None)
    return LedgerCharges(by_event, by_wallet, others)


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
