"""Booking a run's adjustments through wallet.commands, so that a run interrupted anywhere and
resumed (or run again) books each difference exactly once.

Why not rely on command ids alone: the wallet agent recognises a repeated command id only among
a wallet's last RECENT_IDS command ids, and one run can send a wallet many more adjustments than
that. So the difference is always computed against what the LEDGER holds for each event, and
nothing may be in flight when it is computed. In order:

1. `record`: every adjustment is written to `replay_adjustments` (with the ledger entry id it
   will become) and committed BEFORE its command is produced;
2. `send`: the commands are produced (acks=all, idempotent) and all acknowledged;
3. `wait_landed`: the run waits until every entry is in the Postgres ledger.

`settle` runs before a run reads the ledger, under the tenant's lock: for each adjustment of the
tenant recorded but not in the ledger (a run killed between 1 and 3), it reads wallet.commands
from the offsets the run recorded before its first send; a command found there is in flight
and is waited for, one not found was never sent and its row is dropped. After that the ledger
holds every adjustment that will ever land, and the difference computed from it is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from openmonetize.kafka_clients import KEYED
from openmonetize.rebilling.rerate import Adjustment
from schemas.wallet_command import wallet_command

PENDING_SQL = """
SELECT r.run_id, r.command_id, r.entry_id
FROM replay_adjustments r LEFT JOIN ledger_entries l ON l.entry_id = r.entry_id
WHERE r.customer_id = %s AND l.entry_id IS NULL
"""


class BookingError(RuntimeError):
    """Adjustments did not reach Kafka or the ledger in time; the message says how many and why."""


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "openmonetize-replay"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def record(conn: psycopg.Connection, adjustments: Sequence[Adjustment]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY replay_adjustments (entry_id, run_id, command_id, customer_id, event_id, wallet_id, amount) "
                      "FROM STDIN") as copy:
            for a in adjustments:
                copy.write_row((a.entry_id, a.run_id, a.command_id, a.customer_id, a.event_id, a.wallet_id, a.amount))


def command(adjustment: Adjustment, now: datetime) -> dict:
    a = adjustment
    return wallet_command(a.command_id, a.customer_id, a.wallet_id, a.kind, abs(a.amount), now, event_id=a.event_id,
                          run_id=a.run_id, reason=f"rebilling run {a.run_id}", metadata={"user_id": a.user_id})


def send(bootstrap: str, topic: str, encode: Callable[[dict], bytes], adjustments: Sequence[Adjustment],
         timeout_s: float, progress: Callable[[int], None] | None = None) -> None:
    """Produce the commands, keyed by wallet, and wait for every acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 20, "compression.type": "lz4", "message.timeout.ms": int(timeout_s * 1000),
                         **KEYED})
    failed: list = []

    def delivered(err, _msg) -> None:
        if err is not None:
            failed.append(err)

    now = datetime.now(timezone.utc)
    for n, adjustment in enumerate(adjustments, 1):
        value = encode(command(adjustment, now))
        while True:
            try:
                producer.produce(topic, value, adjustment.wallet_id.encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if progress is not None and n % 10_000 == 0:
            progress(10_000)
    left = producer.flush(timeout_s)
    if progress is not None:
        progress(len(adjustments) % 10_000)
    if left or failed:
        raise BookingError(f"{left + len(failed)} of {len(adjustments)} adjustment commands were not acknowledged by "
                           f"Kafka ({failed[0] if failed else 'timed out'}); run the replay again with the same "
                           f"--run-id to finish it")


def wait_landed(conn: psycopg.Connection, customer_id: str, timeout_s: float, only: set[str] | None = None) -> None:
    """Until no recorded adjustment of the tenant (or only those entry ids) is missing from the
    ledger. Gives up after `timeout_s` without progress: a large run lands at the wallet agent's
    pace, however long that takes, as long as it keeps landing."""
    deadline, left = time.monotonic() + timeout_s, None
    while True:
        pending = [row for row in conn.execute(PENDING_SQL, (customer_id,)).fetchall() if only is None or row[2] in only]
        conn.commit()
        if not pending:
            return
        if left is None or len(pending) < left:
            deadline, left = time.monotonic() + timeout_s, len(pending)
        elif time.monotonic() > deadline:
            raise BookingError(
                f"{len(pending)} adjustments (run {pending[0][0]}, …) are on wallet.commands but none reached the "
                f"ledger in the last {timeout_s:g} s: are the worker and the ledger sink running? Run the replay "
                f"again with --run-id {pending[0][0]} once they are")
        time.sleep(0.2 if len(pending) < 10_000 else 1.0)


def settle(conn: psycopg.Connection, bootstrap: str, topic: str, customer_id: str, timeout_s: float,
           decode: Callable[[bytes], dict]) -> int:
    """Resolve every recorded adjustment of the tenant not in the ledger: wait for those on
    wallet.commands, drop the rows of those never sent. Returns how many rows were dropped."""
    pending = conn.execute(PENDING_SQL, (customer_id,)).fetchall()
    conn.commit()
    if not pending:
        return 0
    runs = {run_id for run_id, _, _ in pending}
    sent: set[str] = set()
    for run_id in runs:
        row = conn.execute("SELECT commands_from FROM replay_runs WHERE run_id = %s", (run_id,)).fetchone()
        conn.commit()
        start = {int(p): o for p, o in (row[0] or {}).items()}
        sent |= _commands_sent(bootstrap, topic, customer_id, run_id, start, decode, timeout_s)
    in_flight = {entry for _, command_id, entry in pending if command_id in sent}
    never_sent = [command_id for _, command_id, _ in pending if command_id not in sent]
    if never_sent:
        with conn.transaction():
            conn.execute("DELETE FROM replay_adjustments WHERE command_id = ANY(%s)", (never_sent,))
    if in_flight:
        wait_landed(conn, customer_id, timeout_s, in_flight)
    return len(never_sent)


def _commands_sent(bootstrap: str, topic: str, customer_id: str, run_id: str, start: dict[int, int],
                   decode: Callable[[bytes], dict], timeout_s: float) -> set[str]:
    """Command ids of the run on wallet.commands from `start` (the run's commands_from) to the end.
    A run with no commands_from never sent anything."""
    if not start:
        return set()
    prefix = f"w:{customer_id}:".encode()
    tag = f"rb_{run_id}_"
    found: set[str] = set()
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "openmonetize-replay",
                         "enable.auto.commit": False})
    try:
        todo = {p: end for p, end in ends.items() if start.get(p, 0) < end}
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise BookingError(f"could not read {topic} to its end in {timeout_s:g} s to find run {run_id}'s commands")
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error() is not None:
                    continue
                p = message.partition()
                if p in todo and message.offset() + 1 >= todo[p]:
                    del todo[p]
                key = message.key()
                if key is not None and key.startswith(prefix):
                    command_id = decode(message.value())["command_id"]
                    if command_id.startswith(tag):
                        found.add(command_id)
    finally:
        consumer.close()
    return found
